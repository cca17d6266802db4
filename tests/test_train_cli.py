"""The command line `python -m diffusion_study.train`: resume, refusals, a global batch split over
ranks (torchrun, gloo, 2 processes) equal to one process, and the sharded likelihood evaluation."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusion_study.base import rng
from diffusion_study.nets.models import UNet
from diffusion_study.studies import cli
from diffusion_study.training.distributed import shard_draws, sharded_bound
from diffusion_study.training.loop import load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--base", "8", "--mults", "1,2", "--batch", "8", "--T", "10",
        "--eval-examples", "24", "--eval-batch-size", "8", "--eval-pairs", "4", "--eval-nt", "1",
        "--checkpoint-every", "2", "--log-every", "1", "--no-progress", "--device", "cpu"]


def cli_args(folder, steps, *extra):
    return [*TINY, "--checkpoint-dir", str(folder), "--steps", str(steps), *extra]


def weights(folder):
    return load_checkpoint(Path(folder) / "checkpoint.pt")["model"]


def result(folder):
    return json.loads((Path(folder) / "result.json").read_text())


def close(a, b, atol=1e-5):
    """Two state dicts with the same keys and values: tensors within atol (0: bitwise), the rest equal."""
    def same(x, y):
        if not isinstance(x, torch.Tensor):
            return x == y
        return torch.equal(x, y) if atol == 0 else torch.allclose(x.float(), y.float(), atol=atol)

    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def torchrun(nproc, args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "diffusion_study.train", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_draws_sliced_over_ranks_are_the_one_process_draws():
    x = torch.zeros(6, 3)

    def draws(g):
        return (rng.randn(x.shape, x, g), rng.rand((6,), x, g), rng.randint(1, 9, (6,), x, g), rng.rand((), x, g))

    whole = draws(torch.Generator().manual_seed(3))  # one process, batch 6
    x = torch.zeros(2, 3)  # each of 3 ranks: a local batch of 2, drawing through the context
    parts = []
    for rank in range(3):
        with shard_draws(rank, 3):
            g = torch.Generator().manual_seed(3)
            parts.append((rng.randn(x.shape, x, g), rng.rand((2,), x, g), rng.randint(1, 9, (2,), x, g),
                          rng.rand((), x, g)))
    for i in range(3):
        assert torch.equal(torch.cat([p[i] for p in parts]), whole[i])
    assert all(torch.equal(p[3], whole[3]) for p in parts)  # 0-dim draws are shared
    assert rng.randn.__module__ == "diffusion_study.base.rng"  # restored


def test_global_draws_on_one_process_are_the_plain_run():
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))

    def loss(net, x, g):
        return (net(x + rng.randn(x.shape, x, g)) - x).pow(2).mean(-1)

    runs = []
    for draws in ("rank", "global"):
        torch.manual_seed(0)
        runs.append(train(torch.nn.Linear(2, 2), loss, data, steps=5, batch_size=8, progress=False, draws=draws))
    assert torch.equal(runs[0].losses, runs[1].losses)
    with pytest.raises(ValueError, match="valid choices: 'rank', 'global'"):
        train(torch.nn.Linear(2, 2), loss, data, steps=1, batch_size=8, progress=False, draws="all")


def test_cli_runs_resumes_and_equals_a_straight_run(tmp_path, capsys):
    assert cli.main(cli_args(tmp_path / "straight", 4, "--model", "ndm", "--objective", "vlb")) == 0
    assert cli.main(cli_args(tmp_path / "sliced", 2, "--model", "ndm", "--objective", "vlb")) == 0
    assert load_checkpoint(tmp_path / "sliced" / "checkpoint.pt")["step"] == 2
    assert cli.main(cli_args(tmp_path / "sliced", 4, "--model", "ndm", "--objective", "vlb")) == 0
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "sliced")
    assert close(a, b, atol=0)  # bitwise: same machine, one process
    ra, rb = result(tmp_path / "straight"), result(tmp_path / "sliced")
    for kind in ("discrete_bound", "continuous_bound"):
        assert ra["metrics"][kind]["bits_per_dim"] == rb["metrics"][kind]["bits_per_dim"]
        assert ra["metrics"][kind]["n"] == 24 and ra["metrics"][kind]["stderr"] > 0
    assert rb["params"]["steps"] == 4 and rb["metrics"]["resumed_from"] == 2
    assert "git_commit" in rb["provenance"]
    # finished: the same command does nothing
    assert cli.main(cli_args(tmp_path / "sliced", 4, "--model", "ndm", "--objective", "vlb")) == 0
    assert "already finished 4 steps" in capsys.readouterr().out


def test_cli_refuses_another_configuration_and_bad_choices(tmp_path):
    assert cli.main(cli_args(tmp_path / "run", 1, "--eval-examples", "8")) == 0
    with pytest.raises(SystemExit, match=r"another configuration.*'lr': \(0.0002, 0.001\).*--steps"):
        cli.main(cli_args(tmp_path / "run", 2, "--lr", "1e-3"))
    for flag, value, valid in (("--model", "vae", "'ddpm', 'ndm'"), ("--objective", "elbo", "'simple', 'vlb', 'continuous'"),
                               ("--dataset", "imagenet", "'mnist5k'"), ("--precision", "fp16", "'fp32', 'bf16'")):
        with pytest.raises(SystemExit, match=f"unknown {flag[2:]} '{value}'; valid choices: .*{valid}"):
            cli.main(cli_args(tmp_path / "bad", 1, flag, value))
    with pytest.raises(SystemExit, match="--T must be at least 2"):
        cli.main(cli_args(tmp_path / "bad", 1, "--T", "1"))


def test_sharded_bound_refuses_a_ddp_wrapper_and_is_deterministic():
    from diffusion_study.core.schedules import continuous_schedule
    from diffusion_study.data.images import load_image_dataset

    data = load_image_dataset("digits").test[:20]
    torch.manual_seed(0)
    model = cli.image_model("ndm", continuous_schedule("logsnr_cosine"), base=8, mults=(1, 2))
    objective = cli.Objective(model, "vlb", 17, 10)
    bound = cli.bound_fn("discrete", objective, 50, 1)
    a = sharded_bound(model, data, bound, batch_size=8, seed=1, decoder=objective.decoder)
    b = sharded_bound(model, data, bound, batch_size=8, seed=1)
    assert a.n == 20 and a.local.shape == (20,) and a.mean == b.mean and a.stderr > 0
    assert abs(a.mean - float(a.local.mean())) < 1e-9
    assert abs(sum(a.terms.values()) - a.mean) < 1e-9


@pytest.mark.slow
def test_two_ranks_with_torchrun_equal_one_process(tmp_path):
    """gloo, 2 processes, global batch 8 (4 per rank): the same weights on both ranks, equal (to float
    tolerance) to a one-process run; a run stopped at step 2 and resumed to 4 on 2 ranks too; the
    sharded evaluation of one checkpoint on 2 ranks equals the 1-process evaluation."""
    extra = ["--model", "ndm", "--objective", "continuous"]
    assert cli.main(cli_args(tmp_path / "one", 4, *extra)) == 0
    torchrun(2, cli_args(tmp_path / "two", 2, *extra))
    assert load_checkpoint(tmp_path / "two" / "checkpoint.pt")["step"] == 2
    torchrun(2, cli_args(tmp_path / "two", 4, *extra))
    one, two = result(tmp_path / "one"), result(tmp_path / "two")
    digests = two["metrics"]["rank_parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # DDP kept the ranks' weights equal
    assert two["params"]["world_size"] == 2 and two["metrics"]["resumed_from"] == 2
    assert close(weights(tmp_path / "one"), weights(tmp_path / "two"))
    for kind in ("discrete_bound", "continuous_bound"):
        assert abs(one["metrics"][kind]["bits_per_dim"] - two["metrics"][kind]["bits_per_dim"]) < 1e-4
    # the sharded evaluation: one checkpoint, evaluated on 2 ranks, equals its 1-process evaluation
    shutil.copytree(tmp_path / "one", tmp_path / "again")
    torchrun(2, cli_args(tmp_path / "again", 4, *extra, "--reevaluate"))
    again = result(tmp_path / "again")
    assert again["metrics"]["resumed_from"] == 4  # nothing trained
    for kind in ("discrete_bound", "continuous_bound"):
        for key in ("bits_per_dim", "stderr"):
            assert abs(one["metrics"][kind][key] - again["metrics"][kind][key]) < 1e-6  # sums all-reduced in another order: float rounding
        assert again["metrics"][kind]["n"] == 24


def test_gpu_script_parses_and_builds_valid_commands(tmp_path):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "mnist_gpu.sh")], check=True)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import mnist_gpu
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    for size in (mnist_gpu.FULL, mnist_gpu.SMOKE):
        for objective, T in mnist_gpu.SETTINGS:
            cmd = mnist_gpu.command(size, "ndm", objective, T, 2, tmp_path / "runs", tmp_path / "out", 1)
            args = cli.parse(cmd[cmd.index("diffusion_study.train") + 1:])
            assert (args.objective, args.T, args.seed, args.precision) == (objective, T, 2, "bf16")
    assert "--compile" in mnist_gpu.command(mnist_gpu.FULL, "ddpm", "vlb", 10, 0, tmp_path, tmp_path, 1)
    assert mnist_gpu.command(mnist_gpu.FULL, "ddpm", "vlb", 10, 0, tmp_path, tmp_path, 4)[1:5] == \
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]


def test_bf16_trains_the_networks_in_bfloat16_and_evaluates_in_float32(tmp_path):
    assert cli.main(cli_args(tmp_path / "bf16", 1, "--model", "ndm", "--objective", "continuous", "--precision", "bf16",
                             "--eval-examples", "8")) == 0
    from diffusion_study.core.schedules import continuous_schedule

    model = cli.image_model("ndm", continuous_schedule("logsnr_cosine"), base=8, mults=(1, 2), bf16=True)
    z, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert isinstance(model.net.net, cli.AutocastUNet) and model.net.net(z, t).dtype == torch.float32
    plain = UNet(1, 8, (1, 2))
    assert list(plain.state_dict()) == list(model.net.net.state_dict())  # checkpoints interchangeable
    with cli.full_precision(model):
        assert not model.net.net.autocast_enabled
    assert model.net.net.autocast_enabled
    cli.Objective(model, "continuous", 17, 10)
    f_net = model.process.net.net  # F's U-Net inside transforms.SlowTime
    assert isinstance(f_net, cli.AutocastUNet) and not f_net.autocast_enabled  # F under jvp stays float32


def test_the_cli_trains_chapter_5s_model_on_chapter_5s_loss():
    """One image_model and one bound for the chapter and the command line (so the GPU run's numbers sit beside
    the CPU ones): the CLI's defaults build the chapter's model (SlowTime F, x_hat clipped) bitwise, and its
    'vlb' objective is image_study's sampled bound in bits/dim, on the same draws."""
    from diffusion_study.core.schedules import continuous_schedule
    from diffusion_study.nets import transforms
    from diffusion_study.studies import ndm_images

    sched = continuous_schedule("logsnr_cosine")
    args = cli.parse(cli_args("unused", 1, "--model", "ndm", "--seed", "3"))
    assert (args.clip, args.f_time_scale) == (True, 0.01)
    model = cli.build_model(args, sched, 1, 0.6)
    ref = ndm_images.image_model("ndm", sched, base=8, mults=(1, 2), data_std=0.6, seed=3)
    assert model.clip == (-1.0, 1.0) and isinstance(model.process.net, transforms.SlowTime)
    assert close(model.state_dict(), ref.state_dict(), atol=0)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        got = cli.Objective(model, "vlb", 17, 10)(x, torch.Generator().manual_seed(5))
        nats = ndm_images.bound_loss(sched.grid(10), cli.DiscretizedGaussianDecoder(17))(
            ref, x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, (nats / (64 * math.log(2))).float(), rtol=0, atol=0)
    plain = cli.build_model(cli.parse(cli_args("unused", 1, "--model", "ndm", "--no-clip", "--f-time-scale", "0")),
                            sched, 1, 0.6)
    assert plain.clip is None and isinstance(plain.process.net, UNet)
    with pytest.raises(SystemExit, match="--f-time-scale must be"):
        cli.parse(cli_args("unused", 1, "--f-time-scale", "-1"))
