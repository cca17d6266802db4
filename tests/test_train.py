"""Mechanics of the training loop, on a tiny noisy-regression loss: determinism, resume, EMA,
ensembles, checkpoints, tuple data, the step on its own, torch.distributed."""

import os
import signal
import socket

import diffusion_study.training.loop as train_module
import pytest
import torch
import torch.distributed as dist
from diffusion_study.nets.models import EnsembleMLP, TimeMLP
from diffusion_study.training.loop import (
    ema_decay_at,
    load_checkpoint,
    rank_seed,
    save_checkpoint,
    train,
    train_step,
)
from torch.nn.parallel import DistributedDataParallel

DATA = torch.randn(256, 2, generator=torch.Generator().manual_seed(1)) * 0.5 + 1.0


def denoise_loss(net, x, generator):
    """Predict x from x + noise at a random time: [B, 2] -> [B], or [G, B, 2] -> [G, B]."""
    t = torch.rand(x.shape[:-1], generator=generator)
    noise = torch.randn(x.shape, generator=generator)
    return (net(x + t[..., None] * noise, t) - x).pow(2).mean(-1)


def small_net(seed=0):
    torch.manual_seed(seed)
    return TimeMLP(2, hidden=16, depth=2, time_dim=8)


def run(net, data=DATA, **kwargs):
    kwargs = {"steps": 40, "batch_size": 16, "lr": 3e-3, "progress": False, **kwargs}
    return train(net, denoise_loss, data, **kwargs)


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
    calls, armed = 0, False

    def interrupted(net, x, generator):  # the same loss for both runs: the checkpoint names its loss
        nonlocal calls
        calls += 1
        if armed and calls == 18:  # mid-way through step 18; the last checkpoint is at step 15
            raise KeyboardInterrupt
        return denoise_loss(net, x, generator)

    def go(net, path):
        return train(net, interrupted, DATA, steps=40, batch_size=16, lr=3e-3, progress=False,
                     checkpoint_path=path, checkpoint_every=5)

    full = go(small_net(), tmp_path / "full.pt")
    path = tmp_path / "run.pt"
    calls, armed = 0, True
    with pytest.raises(KeyboardInterrupt):
        go(small_net(), path)
    armed = False
    assert torch.load(path, weights_only=True)["step"] == 15
    # a differently initialised model: everything must come from the checkpoint
    resumed = go(small_net(seed=7), path)
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
    with pytest.raises(ValueError, match=r"not in \[0, steps=10\]"):
        run(small_net(), steps=10, checkpoint_path=path)


def test_checkpoint_contents_and_mismatched_resume(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    run(small_net(), steps=12, checkpoint_path=path, checkpoint_every=5)
    state = torch.load(path, weights_only=True)
    assert set(state) == {"model", "ema", "optimizer", "step", "generator", "losses", "config", "digest"}
    assert state["step"] == 12 and state["losses"].shape == (12,)
    assert state["generator"].dtype == torch.uint8
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary files left
    with pytest.raises(ValueError, match="belongs to another run.*batch_size"):
        run(small_net(), steps=20, batch_size=8, checkpoint_path=path)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    run(small_net(), steps=5, checkpoint_path=path)
    before = path.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as out:  # atomic_path hands torch.save a path
            out.write(b"partial")
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


# --------------------------------------------------------------------------- tuple data


def test_tuple_data_reaches_the_loss_row_by_row():
    """(x, y) data: the loss gets (x[i], y[i]) for the same indices i, [B] or [G, B]."""
    rows = torch.arange(len(DATA))
    seen = []

    def loss(net, batch, generator):
        x, i = batch
        seen.append((x, i))
        return denoise_loss(net, x, generator)

    train(small_net(), loss, (DATA, rows), steps=3, batch_size=8, progress=False)
    train(EnsembleMLP(2, 2, 8, 1, 8), loss, (DATA, rows), steps=2, batch_size=8, progress=False)
    assert [tuple(i.shape) for _, i in seen] == [(8,)] * 3 + [(2, 8)] * 2
    for x, i in seen:
        assert torch.equal(x, DATA[i])


def test_tuple_data_draws_the_stream_of_tensor_data_and_trains_a_conditional_net():
    labels = (DATA[:, 0] > 1).long()
    ignoring = train(small_net(), lambda net, b, g: denoise_loss(net, b[0], g), (DATA, labels),
                     steps=40, batch_size=16, lr=3e-3, progress=False)
    plain = run(small_net())
    assert torch.equal(ignoring.losses, plain.losses)  # same batches, noise and times

    def cond_loss(net, batch, generator):
        x, y = batch
        t = torch.rand(x.shape[:-1], generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        return (net(x + t[..., None] * noise, t, y) - x).pow(2).mean(-1)

    torch.manual_seed(0)
    net = TimeMLP(2, hidden=16, depth=2, time_dim=8, num_classes=2)
    result = train(net, cond_loss, (DATA, labels), steps=40, batch_size=16, lr=3e-3, progress=False)
    assert result.losses.shape == (40,) and torch.isfinite(result.losses).all()
    assert net.label_embedding.weight.grad is not None  # the labels reached the net


@pytest.mark.parametrize("data,match", [((DATA, torch.zeros(10)), "same length"),
                                        ((), "tensor"), ([DATA, DATA], "tensor"),
                                        (torch.zeros(0, 2), "non-empty"),
                                        ((torch.zeros(0, 2), torch.zeros(0)), "non-empty"),
                                        (torch.tensor(1.0), "tensor")])
def test_bad_data_is_rejected(data, match):
    with pytest.raises(ValueError, match=match):
        train(small_net(), denoise_loss, data, steps=2, batch_size=4, progress=False)


# --------------------------------------------------------------------------- step and logging


def test_train_step_returns_the_mean_loss_on_the_device():
    net = small_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = params(net)
    loss = train_step(net, optimizer, denoise_loss, DATA[:16], torch.Generator().manual_seed(0),
                      expected_shape=(16,))
    assert loss.shape == () and not loss.requires_grad
    assert loss.device == net.layers[0].weight.device
    expected = denoise_loss(small_net(), DATA[:16], torch.Generator().manual_seed(0)).mean()
    assert torch.equal(loss, expected)  # the loss before the step
    assert not same(before, params(net))

    ens = EnsembleMLP(3, 2, 8, 1, 8)
    optimizer = torch.optim.Adam(ens.parameters(), lr=1e-3)
    batch = DATA[:24].reshape(3, 8, 2)
    loss = train_step(ens, optimizer, denoise_loss, batch, torch.Generator(), expected_shape=(3, 8))
    assert loss.shape == (3,)
    with pytest.raises(ValueError, match="per-example"):
        train_step(ens, optimizer, denoise_loss, batch, torch.Generator(), expected_shape=(8,))


def test_history_does_not_depend_on_log_every_and_is_copied_only_at_log_points(monkeypatch):
    runs = [run(small_net(), log_every=k) for k in (1, 7, 1000)]
    for other in runs[1:]:
        assert torch.equal(other.losses, runs[0].losses)
        assert same(params(other.model), params(runs[0].model))

    copies = 0
    to_cpu = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        nonlocal copies
        copies += 1
        return to_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    run(small_net(), steps=40, log_every=10)
    assert copies == 1 + 4  # the data's fingerprint at the start; steps 10, 20, 30, 40: no per-step copy


def test_checkpoint_io_is_a_plain_dict_round_trip(tmp_path):
    state = {"step": 3, "w": torch.arange(4.0), "nested": {"g": torch.Generator().get_state()}}
    save_checkpoint(tmp_path / "a" / "x.pt", state)
    back = load_checkpoint(tmp_path / "a" / "x.pt")
    assert back["step"] == 3 and torch.equal(back["w"], state["w"])
    assert torch.equal(back["nested"]["g"], state["nested"]["g"])
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.pt"]


# --------------------------------------------------------------------------- torch.distributed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_seeds():
    assert rank_seed(5, 0) == 5  # rank 0 draws the one-process stream
    seeds = {rank_seed(s, r) for s in range(3) for r in range(1, 5)}
    assert len(seeds) == 12 and not seeds & {0, 1, 2}


def test_ddp_single_process_run_checkpoints_the_unwrapped_model(tmp_path):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    try:
        net = small_net()
        wrapped = DistributedDataParallel(net)
        path = tmp_path / "ddp.pt"
        result = run(wrapped, steps=12, checkpoint_path=path, checkpoint_every=5)
        assert result.model is net and type(result.ema) is TimeMLP
        state = load_checkpoint(path)
        assert list(state["model"]) == list(net.state_dict())  # no "module." prefix
        assert list(state["ema"]) == list(net.state_dict())
        assert state["config"]["world_size"] == 1 and state["generator"].ndim == 1
        # the same run without DDP (one rank: the same stream) gives the same model
        plain = run(small_net(), steps=12)
        assert same(params(plain.model), params(net))
        assert same(params(plain.ema), params(result.ema))
        assert torch.equal(plain.losses, result.losses)
        # and resumes from the checkpoint like a plain run
        longer = run(DistributedDataParallel(small_net(seed=3)), steps=20, checkpoint_path=path)
        assert longer.resumed_from == 12
        assert same(params(longer.model), params(run(small_net(), steps=20).model))
    finally:
        dist.destroy_process_group()


def test_a_nonzero_rank_writes_nothing_and_draws_its_own_batches(tmp_path, monkeypatch):
    def batches_of(rank):
        seen = []

        def loss(net, x, generator):
            seen.append(x)
            return denoise_loss(net, x, generator)

        monkeypatch.setattr(train_module, "_rank", lambda: rank)
        path = tmp_path / f"rank{rank}.pt"
        train(small_net(), loss, DATA, steps=6, batch_size=16, progress=False,
              checkpoint_path=path, checkpoint_every=2)
        return seen, path.exists()

    (zero, written0), (one, written1) = batches_of(0), batches_of(1)
    assert written0 and not written1
    assert all(not torch.equal(a, b) for a, b in zip(zero, one))
    assert len(zero) == len(one) == 6


def _two_rank_worker(rank, port, folder):
    """Rank `rank` of 2 (gloo): a full run, an interrupted one, its resumption; writes results."""
    import datetime

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        seen, armed = [], [False]

        def loss(net, x, generator):  # one loss for every run: the checkpoint names its loss
            if armed[0] and len(seen) == 8:  # mid-way through step 8: the last checkpoint is at step 5
                raise KeyboardInterrupt
            seen.append(x)
            return denoise_loss(net, x, generator)

        interrupted = loss

        kwargs = {"steps": 10, "batch_size": 8, "lr": 3e-3, "progress": False,
                  "checkpoint_every": 5}
        full = train(DistributedDataParallel(small_net()), loss, DATA,
                     checkpoint_path=folder / "full.pt", **kwargs)
        first = seen.copy()
        seen.clear()
        armed[0] = True
        with pytest.raises(KeyboardInterrupt):
            train(DistributedDataParallel(small_net()), interrupted, DATA,
                  checkpoint_path=folder / "run.pt", **kwargs)
        armed[0] = False
        resumed = train(DistributedDataParallel(small_net(seed=7)), loss, DATA,
                        checkpoint_path=folder / "run.pt", **kwargs)
        torch.save({"full": params(full.model), "resumed": params(resumed.model),
                    "full_ema": params(full.ema), "resumed_ema": params(resumed.ema),
                    "batch": first[0], "from": resumed.resumed_from}, folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # > 5 s (two processes): make test-slow
def test_two_ranks_draw_their_own_batches_and_resume_bitwise(tmp_path):
    torch.multiprocessing.spawn(_two_rank_worker, args=(free_port(), tmp_path), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["batch"], r1["batch"])  # rank streams differ
    assert same(r0["full"], r1["full"])  # DDP keeps the ranks' models equal
    for r in (r0, r1):
        assert r["from"] == 5
        assert same(r["full"], r["resumed"]) and same(r["full_ema"], r["resumed_ema"])
    state = load_checkpoint(tmp_path / "run.pt")
    assert state["generator"].shape[0] == 2 and state["config"]["world_size"] == 2
    assert torch.equal(state["generator"], load_checkpoint(tmp_path / "full.pt")["generator"])


# --------------------------------------------------------------------------- faults, injected


def test_a_nan_in_the_data_stops_training_at_once_with_the_step_and_the_batch(tmp_path):
    data = DATA.clone()
    data[::2] = float("nan")  # every other point: the first batch already holds one
    path = tmp_path / "ckpt.pt"
    with pytest.raises(FloatingPointError, match=r"at step 0; training stopped; batch \(16, 2\): \d+ non-finite values"):
        run(small_net(), data=data, checkpoint_path=path, checkpoint_every=5)
    assert not path.exists()  # nothing non-finite was ever checkpointed


def test_a_diverging_loss_keeps_the_last_good_checkpoint(tmp_path):
    calls = 0

    def diverges_at_step_7(net, x, generator):
        nonlocal calls
        calls += 1
        loss = denoise_loss(net, x, generator)
        return loss * float("nan") if calls == 8 else loss

    path = tmp_path / "ckpt.pt"
    with pytest.raises(FloatingPointError, match=f"at step 7.*last good checkpoint: {path} at step 5"):
        train(small_net(), diverges_at_step_7, DATA, steps=40, batch_size=16, progress=False,
              checkpoint_path=path, checkpoint_every=5)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 5 and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0, -1e-3])
def test_learning_rates_that_cannot_train_are_refused(lr):
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        run(small_net(), lr=lr)


def test_a_modified_checkpoint_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(small_net(), steps=10, checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 451.0  # a weight changed behind the run's back
    torch.save(state, path)
    with pytest.raises(ValueError, match=f"checkpoint {path} does not match its checksum"):
        run(small_net(), steps=20, checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    state["model"][name] = state["model"][name] - 451.0
    state["step"] = -5
    from diffusion_study.training.loop import state_digest

    state["digest"] = state_digest({k: v for k, v in state.items() if k != "digest"})
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"records step -5, not in \[0, steps=20\]"):
        run(small_net(), steps=20, checkpoint_path=path)


def test_bytes_flipped_inside_a_checkpoint_file_are_detected(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(small_net(), steps=10, checkpoint_path=path)
    raw = bytearray(path.read_bytes())
    weights = bytes(torch.load(path, weights_only=True)["model"]["layers.0.weight"].numpy().tobytes()[:16])
    at = raw.find(weights)
    assert at > 0
    raw[at:at + 16] = bytes(b ^ 0x5A for b in raw[at:at + 16])  # 16 flipped bytes inside a tensor
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"checkpoint {path}"):
        run(small_net(), steps=20, checkpoint_path=path)


def test_resuming_with_other_data_or_another_loss_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(small_net(), steps=10, checkpoint_path=path)
    with pytest.raises(ValueError, match="differ in.*'data'"):
        run(small_net(), steps=20, checkpoint_path=path, data=DATA.flip(0))  # same size, other values

    def other_loss(net, x, generator):
        return denoise_loss(net, x, generator) * 2

    with pytest.raises(ValueError, match="differ in.*'loss'"):
        train(small_net(), other_loss, DATA, steps=20, batch_size=16, lr=3e-3, progress=False,
              checkpoint_path=path)


@pytest.mark.parametrize("signum,raised", [(signal.SIGTERM, SystemExit), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, capsys, signum, raised):
    calls = 0

    def signalled(net, x, generator):
        nonlocal calls
        calls += 1
        if calls == 12:  # during step 11: the run finishes that step, saves and stops
            os.kill(os.getpid(), signum)
        return denoise_loss(net, x, generator)

    path = tmp_path / "ckpt.pt"
    with pytest.raises(raised):
        train(small_net(), signalled, DATA, steps=40, batch_size=16, lr=3e-3, progress=False,
              checkpoint_path=path, checkpoint_every=100)
    assert f"stopped at step 12; checkpoint {path}; rerun the same command to resume" in capsys.readouterr().err
    assert torch.load(path, weights_only=True)["step"] == 12
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary files
    full = train(small_net(), signalled, DATA, steps=40, batch_size=16, lr=3e-3, progress=False,
                 checkpoint_path=path, checkpoint_every=100)
    assert full.resumed_from == 12


def test_the_run_config_travels_with_the_checkpoint_and_names_the_keys_that_differ(tmp_path):
    from diffusion_study.training.loop import config_differences, config_hash

    path = tmp_path / "ckpt.pt"
    run(small_net(), steps=4, checkpoint_path=path, run_config={"T": 10, "schedule": {"name": "cosine"}})
    config = load_checkpoint(path)["config"]
    assert config["run"]["T"] == 10 and config["run_hash"] == config_hash({"schedule": {"name": "cosine"}, "T": 10})
    with pytest.raises(ValueError, match=r"differ in \{'run.T': \(10, 20\), 'run.schedule.name': \('cosine', 'linear'\)\}"):
        run(small_net(), steps=8, checkpoint_path=path, run_config={"T": 20, "schedule": {"name": "linear"}})
    assert config_differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4}) == {"b.c": (2, 3), "d": (None, 4)}
    assert run(small_net(), steps=8, checkpoint_path=path,
               run_config={"T": 10, "schedule": {"name": "cosine"}}).resumed_from == 4
