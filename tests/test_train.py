"""Mechanics of the training loop, on a tiny noisy-regression loss: determinism, resume, EMA,
ensembles, checkpoints."""

import pytest
import torch

from diffusion_study.models import EnsembleMLP, TimeMLP
from diffusion_study.train import ema_decay_at, train

DATA = torch.randn(256, 2, generator=torch.Generator().manual_seed(1)) * 0.5 + 1.0


def denoise_loss(net, x, generator):
    """Predict x from x + noise at a random time: [B, 2] -> [B], or [G, B, 2] -> [G, B]."""
    t = torch.rand(x.shape[:-1], generator=generator)
    noise = torch.randn(x.shape, generator=generator)
    return (net(x + t[..., None] * noise, t) - x).pow(2).mean(-1)


def small_net(seed=0):
    torch.manual_seed(seed)
    return TimeMLP(2, hidden=16, depth=2, time_dim=8)


def run(net, **kwargs):
    kwargs = {"steps": 40, "batch_size": 16, "lr": 3e-3, "progress": False, **kwargs}
    return train(net, denoise_loss, DATA, **kwargs)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_training_lowers_the_loss():
    net = small_net()
    before = denoise_loss(net, DATA, torch.Generator().manual_seed(5)).mean()
    result = run(net, steps=300)
    after = denoise_loss(result.model, DATA, torch.Generator().manual_seed(5)).mean()
    assert result.losses.shape == (300,)
    assert after < 0.3 * before
    assert result.losses[-50:].mean() < 0.3 * result.losses[:10].mean()
    ema_after = denoise_loss(result.ema, DATA, torch.Generator().manual_seed(5)).mean()
    assert ema_after < 0.5 * before


def test_run_is_a_function_of_the_seed():
    a, b, c = run(small_net()), run(small_net()), run(small_net(), seed=1)
    assert same(params(a.model), params(b.model)) and torch.equal(a.losses, b.losses)
    assert not same(params(a.model), params(c.model))


def test_interrupted_and_resumed_run_is_bitwise_identical(tmp_path):
    full = run(small_net(), checkpoint_path=tmp_path / "full.pt", checkpoint_every=5)

    calls = 0

    def interrupted(net, x, generator):
        nonlocal calls
        calls += 1
        if calls == 18:  # mid-way through step 18; the last checkpoint is at step 15
            raise KeyboardInterrupt
        return denoise_loss(net, x, generator)

    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(small_net(), interrupted, DATA, steps=40, batch_size=16, lr=3e-3, progress=False,
              checkpoint_path=path, checkpoint_every=5)
    assert torch.load(path, weights_only=True)["step"] == 15
    # a differently initialised model: everything must come from the checkpoint
    resumed = run(small_net(seed=7), checkpoint_path=path, checkpoint_every=5)
    assert resumed.resumed_from == 15
    assert same(params(resumed.model), params(full.model))
    assert same(params(resumed.ema), params(full.ema))
    assert torch.equal(resumed.losses, full.losses)


def test_extending_a_finished_run_equals_one_longer_run(tmp_path):
    path = tmp_path / "ckpt.pt"
    short = run(small_net(), steps=20, checkpoint_path=path)
    assert short.losses.shape == (20,)
    longer = run(small_net(), steps=40, checkpoint_path=path)
    assert longer.resumed_from == 20 and longer.losses.shape == (40,)
    assert same(params(longer.model), params(run(small_net()).model))
    # asking again for the same total does nothing
    again = run(small_net(), steps=40, checkpoint_path=path)
    assert again.resumed_from == 40 and same(params(again.model), params(longer.model))
    with pytest.raises(ValueError, match="beyond steps"):
        run(small_net(), steps=10, checkpoint_path=path)


def test_checkpoint_contents_and_mismatched_resume(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    run(small_net(), steps=12, checkpoint_path=path, checkpoint_every=5)
    state = torch.load(path, weights_only=True)
    assert set(state) == {"model", "ema", "optimizer", "step", "generator", "losses", "config"}
    assert state["step"] == 12 and state["losses"].shape == (12,)
    assert state["generator"].dtype == torch.uint8
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary files left
    with pytest.raises(ValueError, match="was written with"):
        run(small_net(), steps=20, batch_size=8, checkpoint_path=path)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    run(small_net(), steps=5, checkpoint_path=path)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run(small_net(), steps=10, checkpoint_path=path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_ema_follows_the_model():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999
    copy = run(small_net(), ema_decay=0.0)  # decay 0: the EMA is the model itself
    assert same(params(copy.ema), params(copy.model))
    smooth = run(small_net(), ema_decay=0.9)
    assert not same(params(smooth.ema), params(smooth.model))
    assert run(small_net(), ema_decay=None).ema is None


def test_ensemble_members_train_like_separate_models():
    """With one data point and a noise-free loss, member g of a trained ensemble equals a
    TimeMLP started from member g's weights and trained alone: the loss is summed over G and
    averaged over B, and one Adam over stacked tensors is G independent Adams."""
    grid_t = torch.linspace(0.05, 0.95, 8)

    def fixed_loss(net, x, generator):  # x: [B, 2] or [G, B, 2]; t fixed, no noise
        t = grid_t.expand(x.shape[:-1])
        return (net(x * t[..., None], t) - x).pow(2).mean(-1)

    one_point = torch.tensor([[1.0, -0.5]])
    ens = EnsembleMLP(3, 2, hidden=16, depth=2, time_dim=8, generator=torch.Generator().manual_seed(0))
    starts = [ens.member(g) for g in range(3)]
    kwargs = {"steps": 25, "batch_size": 8, "lr": 1e-2, "progress": False, "ema_decay": None}
    result = train(ens, fixed_loss, one_point, **kwargs)
    assert result.losses.shape == (25, 3)
    for g, start in enumerate(starts):
        alone = train(start, fixed_loss, one_point, **kwargs)
        assert torch.allclose(alone.losses, result.losses[:, g], atol=1e-5)
        for a, b in zip(params(alone.model), params(ens.member(g))):
            assert torch.allclose(a, b, atol=1e-5)


def test_ensemble_members_get_their_own_batches_and_gradients():
    seen = []

    def loss(net, x, generator):
        seen.append(x)
        per = denoise_loss(net, x, generator)  # [G, B]
        return per * torch.tensor([1.0, 0.0, 1.0])[:, None]  # member 1 has no loss

    ens = EnsembleMLP(3, 2, hidden=8, depth=2, time_dim=8)
    start = params(ens)
    train(ens, loss, DATA, steps=5, batch_size=16, progress=False)
    assert seen[0].shape == (3, 16, 2) and not torch.equal(seen[0][0], seen[0][1])
    for before, after in zip(start, params(ens)):
        assert torch.equal(before[1], after[1])  # zero gradient: Adam leaves member 1 alone
        assert not torch.equal(before[0], after[0])


def test_progress_bar_shows_the_loss(capsys):
    train(small_net(), denoise_loss, DATA, steps=15, batch_size=8, progress=True)
    assert "loss=" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"steps": 0}, {"batch_size": -1}, {"steps": 2.5}, {"lr": 0.0},
                                 {"ema_decay": 1.5}, {"grad_clip": -1.0}])
def test_bad_arguments_are_rejected(bad):
    with pytest.raises(ValueError):
        run(small_net(), **bad)


def test_loss_shape_and_ensemble_clip_are_checked():
    with pytest.raises(ValueError, match="per-example"):
        train(small_net(), lambda n, x, g: denoise_loss(n, x, g).mean(), DATA, steps=2,
              batch_size=4, progress=False)
    with pytest.raises(ValueError, match="couple"):
        train(EnsembleMLP(2, 2, 8, 1, 8), denoise_loss, DATA, steps=2, batch_size=4,
              grad_clip=1.0, progress=False)
    clipped = run(small_net(), grad_clip=0.5)
    assert torch.isfinite(clipped.losses).all()
