"""Behaviour of the networks: time features, the batched ensemble, the U-Net."""

import math

import pytest
import torch

from diffusion_study.models import EnsembleMLP, TimeMLP, UNet, count_parameters, time_embedding


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


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_ensemble_member_equals_standalone_time_mlp(activation):
    ens = EnsembleMLP(4, 3, hidden=16, depth=3, time_dim=8, activation=activation,
                      generator=torch.Generator().manual_seed(0))
    z, t = torch.randn(4, 7, 3), torch.rand(4, 7)
    out = ens(z, t)
    assert out.shape == (4, 7, 3)
    for g in range(4):
        single = ens.member(g)
        assert isinstance(single, TimeMLP)
        assert torch.allclose(out[g], single(z[g], t[g]), atol=1e-6)
    assert count_parameters(ens) == 4 * count_parameters(ens.member(0))
    # members are initialised differently
    assert not torch.allclose(out[0], ens.member(1)(z[0], t[0]))


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
