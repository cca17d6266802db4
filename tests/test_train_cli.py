"""The command line `python -m diffusion_study.train`: resume, refusals, a global batch split over
ranks (torchrun, gloo, 2 processes) equal to one process, and the sharded likelihood evaluation."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diffusion_study.base import rng
from diffusion_study.nets.models import UNet
from diffusion_study.studies import cli
from diffusion_study.training.distributed import shard_draws, sharded_bound
from diffusion_study.training.loop import load_checkpoint, train
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------- issue 22: hardening, second round


@pytest.mark.parametrize("extra,message", [
    (["--logsnr-max", "-10", "--logsnr-min", "10"], r"--logsnr-max must exceed --logsnr-min.*got --logsnr-max -10.0"),
    (["--logsnr-max", "nan"], r"--logsnr-max must be a finite number, got nan"),
    (["--eval-examples", "-3"], r"--eval-examples must be a positive integer.*got -3"),
    (["--eval-examples", "0"], r"--eval-examples must be a positive integer.*got 0"),
    (["--eval-examples", "298"], r"--eval-examples must lie in \[1, 297\].*got 298"),
    (["--grad-clip", "-1"], r"--grad-clip must be >= 0.*got -1.0"),
    (["--lr", "1e9"], r"--lr must lie in \(0, 1\].*got 1000000000.0"),
    (["--batch", "4096"], r"--batch must be at most the 1500 training images of digits.*got 4096"),
    (["--seed", "-1"], r"--seed must be an integer >= 0, got -1"),
    (["--device", "tpu"], r"unknown device 'tpu'; valid choices: 'auto', 'cpu', 'cuda'"),
])
def test_bad_flags_are_refused_in_one_line_before_anything_is_written(tmp_path, extra, message):
    folder = tmp_path / "run"
    with pytest.raises(SystemExit, match=message) as info:
        cli.main(cli_args(folder, 2, *extra))
    assert "\n" not in str(info.value) and str(info.value).startswith("error: --") or "unknown" in str(info.value)
    assert not folder.exists()


def test_a_checkpoint_dir_that_is_a_file_or_under_one_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for folder in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(SystemExit, match=f"--checkpoint-dir {folder} cannot hold the run: .*is a file, not a folder"):
            cli.main(cli_args(folder, 1))


def test_steps_below_the_steps_done_is_refused(tmp_path):
    assert cli.main(cli_args(tmp_path / "run", 2, "--eval-examples", "8")) == 0
    with pytest.raises(SystemExit, match=r"--steps must be at least the 2 steps already done in .*checkpoint.pt.*got 1"):
        cli.main(cli_args(tmp_path / "run", 1, "--eval-examples", "8"))


def test_a_copied_checkpoint_refuses_another_configuration_naming_the_keys(tmp_path):
    assert cli.main(cli_args(tmp_path / "run", 2, "--eval-examples", "8")) == 0
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["config"]["run"]["T"] == 10 and len(state["config"]["run_hash"]) == 64
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "run" / "checkpoint.pt", copy / "checkpoint.pt")
    for extra, key in ((["--T", "20"], "'T': (10, 20)"), (["--objective", "continuous"], "'objective': ('vlb', 'continuous')"),
                       (["--no-clip"], "'clip': (True, False)"), (["--schedule", "cosine"], "'schedule': ('logsnr_cosine', 'cosine')")):
        with pytest.raises(SystemExit, match=f"trained under another configuration; .*differ in .*{re.escape(key)}"):
            cli.main(cli_args(copy, 4, "--eval-examples", "8", *extra))
        assert sorted(p.name for p in copy.iterdir()) == ["checkpoint.pt"]  # no config.json claiming the new settings
    assert cli.main(cli_args(copy, 3, "--eval-examples", "8")) == 0  # its own settings resume
    assert result(copy)["metrics"]["resumed_from"] == 2


def test_a_resume_does_not_repeat_evaluations(tmp_path):
    """As after a SIGKILL: eval.jsonl holds steps 1-4 but the checkpoint is step 2's; the resumed run does not
    log steps 3 and 4 again."""
    run = ["--eval-every", "1", "--eval-batches", "1", "--eval-examples", "8"]
    assert cli.main(cli_args(tmp_path / "run", 2, *run)) == 0
    at_2 = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    assert cli.main(cli_args(tmp_path / "run", 4, *run)) == 0
    (tmp_path / "run" / "checkpoint.pt").write_bytes(at_2)
    (tmp_path / "run" / "result.json").unlink()
    with open(tmp_path / "run" / "eval.jsonl", "a") as f:
        f.write('{"step": 5, "bou')  # a line cut by the kill
    assert cli.main(cli_args(tmp_path / "run", 4, *run)) == 0
    assert result(tmp_path / "run")["metrics"]["resumed_from"] == 2
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()[:4]]
    assert steps == [1, 2, 3, 4]


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, -1.0, 1e-4, 1e9]))
INTS = st.integers(-5, 5000)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["--logsnr-max", "--logsnr-min", "--lr", "--ema", "--grad-clip", "--f-time-scale"]),
                       FLOATS),
       st.dictionaries(st.sampled_from(["--T", "--steps", "--batch", "--eval-examples", "--eval-every", "--seed",
                                        "--eval-nt", "--log-every"]), INTS))
def test_the_parser_accepts_only_valid_settings_and_names_the_flag(floats, ints):
    argv = ["--checkpoint-dir", "unused"]
    for flag, value in {**floats, **ints}.items():
        argv += [f"{flag}={value}"]
    try:
        args = cli.parse(argv)
    except SystemExit as exc:
        message = str(exc)
        assert message.startswith("error: --") and "\n" not in message
        named = set(re.findall(r"--[A-Za-z-]+", message))
        assert named & {*floats, *ints}  # it names a flag that was given
        return
    assert all(math.isfinite(v) for v in (args.logsnr_max, args.logsnr_min, args.lr, args.ema, args.grad_clip))
    assert args.logsnr_max > args.logsnr_min and 0 < args.lr <= 1 and 0 <= args.ema < 1 and args.grad_clip >= 0
    assert args.T >= 2 and args.steps >= 1 and args.batch >= 1 and args.eval_every >= 0 and args.seed >= 0
    assert args.eval_examples is None or args.eval_examples >= 1


@pytest.mark.slow
def test_sigint_saves_and_exits_130_without_a_traceback(tmp_path):
    folder = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffusion_study.train", *cli_args(folder, 100000)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(folder / "checkpoint.pt")
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert time.monotonic() - began < 10
    assert "Traceback" not in err and "stopped at step" in err and "rerun the same command to resume" in err
    step = int(err.split("stopped at step ")[1].split(";")[0])
    assert load_checkpoint(folder / "checkpoint.pt")["step"] == step


def wait_for(path, timeout=120):
    end = time.monotonic() + timeout
    while not Path(path).exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_to_torchrun_saves_within_10_s_and_resumes_bitwise(tmp_path):
    """torchrun, 2 gloo ranks, a checkpoint only at the end and no log point in sight: SIGTERM to torchrun
    (which SIGKILLs its workers 30 s later) leaves a checkpoint within 10 s, both ranks having stopped after
    the same step; resumed to 3 more steps it equals a straight 2-rank run bitwise."""
    far = ["--checkpoint-every", "100000", "--log-every", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "diffusion_study.train", *cli_args(tmp_path / "cut", 100000), *far]
    log = tmp_path / "log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + 180
        while "rank(s) on cpu" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < end, log.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(3)  # a few steps into training
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_for(tmp_path / "cut" / "checkpoint.pt", timeout=10)
        saved = time.monotonic() - began
        proc.wait(timeout=40)
    text = log.read_text()
    assert saved < 10, text[-3000:]
    stops = sorted(set(int(part.split(";")[0]) for part in text.split("stopped at step ")[1:]))
    step = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"]
    assert stops == [step] and step > 0, text[-3000:]  # every rank stopped after the same step
    torchrun(2, cli_args(tmp_path / "cut", step + 3, *far))
    torchrun(2, cli_args(tmp_path / "straight", step + 3, *far))
    assert result(tmp_path / "cut")["metrics"]["resumed_from"] == step
    assert close(weights(tmp_path / "cut"), weights(tmp_path / "straight"), atol=0)
    cut, straight = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("cut", "straight"))
    assert close(cut["ema"], straight["ema"], atol=0) and torch.equal(cut["losses"], straight["losses"])


def test_the_readme_training_commands_parse():
    """The README's training commands use flags the parser accepts (its quick one ends in about a minute)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Train at scale, benchmark")[1].split("\n## ")[0]
    commands = [c.split("#")[0].replace("\\\n", " ").split() for c in
                re.findall(r"^python -m diffusion_study\.train (.*?(?:\\\n.*?)*)$", section, flags=re.M)]
    assert len(commands) == 2
    for argv in commands:
        args = cli.parse(argv)
        assert args.checkpoint_dir.startswith("runs/")
    assert cli.parse(commands[0]).steps == 30


def test_every_flag_has_help_and_one_default(tmp_path):
    p = cli.parser()
    assert all(a.help for a in p._actions), [a.dest for a in p._actions if not a.help]
    text = " ".join(p.format_help().split())
    assert "(default: None)" not in text and "when available) (default" not in text
    assert "--device DEVICE cpu, cuda, or auto: cuda when available (default: auto)" in text
    (tmp_path / "config.json").write_text('{"lr": 0.1}')
    with pytest.raises(SystemExit, match=r"only .*--no-progress, --eval-every"):  # the flag's real spelling
        cli._check_run_dir(tmp_path, {"lr": 0.2}, None, 1)
