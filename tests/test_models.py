"""Behaviour of the networks: time features, the batched ensemble, the U-Net, class labels."""

import math

import pytest
import torch
from diffusion_study.nets.models import (
    EnsembleMLP,
    TimeMLP,
    UNet,
    count_parameters,
    time_embedding,
)


def test_time_embedding_is_sin_cos_of_scaled_time():
    t = torch.tensor([0.0, 0.25, 1.0])
    emb = time_embedding(t, 8)
    assert emb.shape == (3, 8)
    # at t = 0: sin = 0, cos = 1; sin^2 + cos^2 = 1 for each frequency
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.allclose(emb[:, :4] ** 2 + emb[:, 4:] ** 2, torch.ones(3, 4))
    # the first frequency is 1 on the 1000-step scale
    assert torch.allclose(emb[1, 0], torch.sin(torch.tensor(250.0)))
    # nearby times (one DDPM step apart) get distinguishable features
    assert (time_embedding(torch.tensor([0.5]), 32) - time_embedding(torch.tensor([0.501]), 32)).abs().max() > 0.1


def test_time_embedding_rejects_odd_dim():
    with pytest.raises(ValueError, match="even"):
        time_embedding(torch.zeros(2), 7)


def test_time_mlp_matches_hand_computation_and_depends_on_time():
    torch.manual_seed(0)
    net = TimeMLP(2, hidden=20, depth=2, time_dim=8, activation="relu")
    assert len(net.layers) == 3  # two hidden layers and a linear output
    assert count_parameters(net) == (10 * 20 + 20) + (20 * 20 + 20) + (20 * 2 + 2)
    z, t = torch.randn(5, 2), torch.rand(5)
    h = torch.cat([z, time_embedding(t, 8)], 1)
    for layer in net.layers[:-1]:
        h = torch.relu(h @ layer.weight.T + layer.bias)
    expected = h @ net.layers[-1].weight.T + net.layers[-1].bias
    assert torch.allclose(net(z, t), expected, atol=1e-6)
    assert not torch.allclose(net(z, t), net(z, 1 - t))


def test_time_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match="'relu', 'silu'"):
        TimeMLP(2, activation="tanh")


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_ensemble_member_equals_standalone_time_mlp(activation, num_classes):
    ens = EnsembleMLP(4, 3, hidden=16, depth=3, time_dim=8, activation=activation,
                      generator=torch.Generator().manual_seed(0), num_classes=num_classes)
    z, t = torch.randn(4, 7, 3), torch.rand(4, 7)
    y = torch.randint(num_classes + 1, (4, 7)) if num_classes else None
    out = ens(z, t, y)
    assert out.shape == (4, 7, 3)
    for g in range(4):
        single = ens.member(g)
        assert isinstance(single, TimeMLP)
        assert torch.allclose(out[g], single(z[g], t[g], None if y is None else y[g]), atol=1e-6)
    assert count_parameters(ens) == 4 * count_parameters(ens.member(0))
    # members are initialised differently
    assert not torch.allclose(out[0], ens.member(1)(z[0], t[0], None if y is None else y[0]))


def test_ensemble_init_bounds_like_nn_linear():
    ens = EnsembleMLP(64, 2, hidden=20, depth=2, time_dim=32)
    for w, b in zip(ens.weights, ens.biases):
        bound = 1 / math.sqrt(w.shape[1])
        assert w.abs().max() <= bound and b.abs().max() <= bound
        # uniform on [-bound, bound]: the std is bound / sqrt(3)
        assert abs(w.std().item() - bound / math.sqrt(3)) < 0.05 * bound


def test_ensemble_gradients_of_members_are_independent():
    ens = EnsembleMLP(3, 2, hidden=8, depth=2, time_dim=8)
    z, t = torch.randn(3, 5, 2), torch.rand(3, 5)
    ens(z, t)[0].pow(2).sum().backward()
    for w, b in zip(ens.weights, ens.biases):
        assert w.grad[0].abs().sum() > 0
        assert torch.equal(w.grad[1:], torch.zeros_like(w.grad[1:]))
        assert torch.equal(b.grad[1:], torch.zeros_like(b.grad[1:]))


def test_ensemble_member_index_checked():
    with pytest.raises(ValueError, match="member index"):
        EnsembleMLP(2, 2, hidden=4, depth=1).member(2)


@pytest.mark.parametrize("channels,size,mults", [(1, 8, (1, 2)), (1, 28, (1, 2, 2)), (3, 32, (1, 2, 2, 2))])
def test_unet_shapes_and_zero_output_at_init(channels, size, mults):
    net = UNet(channels, base=16, mults=mults, attention=True)
    z, t = torch.randn(2, channels, size, size), torch.rand(2)
    out = net(z, t)
    assert out.shape == z.shape
    assert torch.equal(out, torch.zeros_like(z))  # zero-initialised output conv


def test_unet_uses_time_and_skip_connections():
    torch.manual_seed(0)
    net = UNet(1, base=16, mults=(1, 2, 2))
    torch.nn.init.normal_(net.out.weight, std=0.1)
    z, t = torch.randn(2, 1, 28, 28), torch.rand(2)
    assert not torch.allclose(net(z, t), net(z, 1 - t))
    # translation-sensitive but local: a pixel change moves the output most near that pixel
    z2 = z.clone()
    z2[:, :, 3, 3] += 1.0
    diff = (net(z2, t) - net(z, t)).abs().sum((0, 1))
    assert diff[3, 3] > diff[20, 20]
    # the batch members are processed independently (GroupNorm, not BatchNorm)
    assert torch.allclose(net(z[:1], t[:1]), net(z, t)[:1], atol=1e-5)


def test_unet_can_fit_one_batch():
    torch.manual_seed(0)
    net = UNet(1, base=8, mults=(1, 2))
    z, t, target = torch.randn(8, 1, 8, 8), torch.rand(8), torch.randn(8, 1, 8, 8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = (net(z, t) - target).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


# --------------------------------------------------------------------------- conditioning


def conditional_nets():
    """(net, z, t) triples for the three classes of network, each with 3 classes."""
    torch.manual_seed(0)
    unet = UNet(1, base=8, mults=(1, 2), num_classes=3)
    torch.nn.init.normal_(unet.out.weight, std=0.1)  # the zero-initialised output would hide y
    mlp = TimeMLP(2, hidden=16, depth=2, time_dim=8, num_classes=3)
    ens = EnsembleMLP(2, 2, hidden=16, depth=2, time_dim=8, num_classes=3)
    return [(mlp, torch.randn(5, 2), torch.rand(5)), (ens, torch.randn(2, 5, 2), torch.rand(2, 5)),
            (unet, torch.randn(5, 1, 8, 8), torch.rand(5))]


def test_event_dims_and_null_label():
    assert (TimeMLP.event_dims, EnsembleMLP.event_dims, UNet.event_dims) == (1, 1, 3)
    for net, z, t in conditional_nets():
        assert net.num_classes == net.null_label == 3
        assert z.ndim - net.event_dims == t.ndim  # the batch dims of z are those of t


def test_conditional_output_depends_on_the_label_and_none_is_the_null_label():
    for net, z, t in conditional_nets():
        batch = t.shape
        outs = [net(z, t, torch.full(batch, label)) for label in range(4)]
        assert all(out.shape == z.shape for out in outs)
        for a in range(4):
            for b in range(a + 1, 4):
                assert not torch.allclose(outs[a], outs[b]), (type(net).__name__, a, b)
        assert torch.equal(net(z, t), outs[net.null_label])
        # labels act per example: a mixed batch picks, example by example, the output of its label
        mixed = torch.arange(t.numel()).reshape(batch) % 4
        stacked = torch.stack(outs).flatten(1, t.ndim)  # [4, prod(batch), event...]
        expected = stacked[mixed.reshape(-1), torch.arange(t.numel())].reshape(z.shape)
        assert torch.allclose(net(z, t, mixed), expected, atol=1e-5)


def test_unconditional_nets_refuse_labels():
    nets = [(TimeMLP(2, 8, 1, 8), torch.randn(3, 2), torch.rand(3)),
            (EnsembleMLP(2, 2, 8, 1, 8), torch.randn(2, 3, 2), torch.rand(2, 3)),
            (UNet(1, base=8, mults=(1,)), torch.randn(3, 1, 8, 8), torch.rand(3))]
    for net, z, t in nets:
        assert net.num_classes == 0 and not hasattr(net, "label_embedding")
        with pytest.raises(ValueError, match="unconditional"):
            net(z, t, torch.zeros(t.shape, dtype=torch.long))


def test_labels_are_checked_on_the_host():
    net = TimeMLP(2, 8, 1, 8, num_classes=2)
    z, t = torch.randn(3, 2), torch.rand(3)
    with pytest.raises(ValueError, match="int64"):
        net(z, t, torch.zeros(3))
    with pytest.raises(ValueError, match="batch shape"):
        net(z, t, torch.zeros(4, dtype=torch.long))
    for bad in [-1, 1.5, True]:
        with pytest.raises(ValueError, match="num_classes"):
            TimeMLP(2, num_classes=bad)


def test_conditioning_leaves_the_other_parameters_as_in_the_unconditional_net():
    """The label embedding is created last, so a seeded conditional net shares every other
    parameter with the seeded unconditional one (and the unconditional net is as before)."""
    for make in [lambda k: TimeMLP(2, 16, 2, 8, num_classes=k),
                 lambda k: EnsembleMLP(3, 2, 8, 2, 8, generator=torch.Generator().manual_seed(0),
                                       num_classes=k),
                 lambda k: UNet(1, base=8, mults=(1, 2), num_classes=k)]:
        torch.manual_seed(0)
        plain = make(0).state_dict()
        torch.manual_seed(0)
        cond = make(4).state_dict()
        extra = set(cond) - set(plain)
        assert extra in ({"label_embedding"}, {"label_embedding.weight"})
        assert all(torch.equal(plain[k], cond[k]) for k in plain)


def test_conditional_ensemble_member_null_label_and_independent_label_tables():
    ens = EnsembleMLP(3, 2, hidden=16, depth=2, time_dim=8, num_classes=4,
                      generator=torch.Generator().manual_seed(0))
    assert ens.label_embedding.shape == (3, 5, 8)
    z, t = torch.randn(3, 6, 2), torch.rand(3, 6)
    y = torch.randint(5, (3, 6), generator=torch.Generator().manual_seed(1))
    out, null = ens(z, t, y), ens(z, t)
    for g in range(3):
        single = ens.member(g)
        assert single.num_classes == 4
        assert torch.allclose(out[g], single(z[g], t[g], y[g]), atol=1e-6)
        assert torch.allclose(null[g], single(z[g], t[g]), atol=1e-6)
    assert count_parameters(ens) == 3 * count_parameters(ens.member(0))
    # members' label embeddings are drawn independently
    assert not torch.equal(ens.label_embedding[0], ens.label_embedding[1])


def test_conditional_unet_shape_and_gradient_reaches_the_label_embedding():
    net = UNet(3, base=8, mults=(1, 2), num_classes=10)
    z, t, y = torch.randn(2, 3, 12, 12), torch.rand(2), torch.tensor([3, 10])
    out = net(z, t, y)
    assert out.shape == z.shape
    torch.nn.init.normal_(net.out.weight, std=0.1)
    net(z, t, y).pow(2).sum().backward()
    grad = net.label_embedding.weight.grad  # [11, t_dim]: only the rows used get gradient
    assert grad[[3, 10]].abs().sum(1).gt(0).all() and grad[[0, 1, 2]].abs().sum() == 0
