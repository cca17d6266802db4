"""What one NDM training step costs next to DDPM's: network calls (counted) and wall time (measured).

Both sides use the same x_hat network (`transforms.PreconditionedX0` around a TimeMLP / EnsembleMLP /
UNet, prediction 'x0'); NDM adds an F network of the same architecture and size
(`transforms.mlp_forward` / `transforms.unet_forward`, F = x + t net). Every variant is one Adam step
(zero_grad, backward of the mean loss, step) on the same batch, from a fixed initialisation:

    ddpm_bound    DDPM (F = identity) on the discrete bound, `vlb_terms(..., n_timesteps=1)`
                  (T = 1000 on the logsnr_cosine grid: one KL term per example, prior, decoder)
    ndm_bound     NDM on the same bound (the chapter's training loss)
    ddpm_simple   DDPM on L_simple for the same x0-predicting network (`simple_loss`): the cheapest step
    ddpm_cont     DDPM on the continuous bound (`continuous_time.continuous_bound_terms`, F = identity: VDM)
    ndm_cont      NDM on the continuous bound (F and dF/dt by torch.func.jvp, then backward through it)

Configurations (`--configs`):

    mlp        one TimeMLP(2, hidden 128, depth 3, SiLU) for x_hat and one for F, batch 256 of 2D points
    ensemble   chapter 4's: EnsembleMLP of G = 15 members (hidden 64, depth 3), batch [15, 64, 2]
    unet       UNet(1, base 32, mults (1, 2)) for x_hat and for F, batch [32, 1, 28, 28] (slow on a CPU)

Network calls per step are counted with forward hooks (`ndm_2d.CallCounter`); repeats are
interleaved (every variant once per round, the order rotated) after untimed warm-up rounds, and
medians are reported; every ratio is between medians of this one run.

    .venv/bin/python bench/ndm_step.py                          # mlp + ensemble, 1 thread, ~1 minute
    .venv/bin/python bench/ndm_step.py --configs unet --repeats 7 --steps 2 --out bench/results/ndm_step_unet.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
from diffusion_study.book.results import provenance, write_json_atomic
from diffusion_study.core import continuous_time
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import GaussianDecoder, simple_loss, vlb_terms
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import continuous_schedule, logsnr_cosine_schedule
from diffusion_study.data.toy2d import checkerboard
from diffusion_study.nets import transforms
from diffusion_study.nets.models import EnsembleMLP, TimeMLP, UNet, count_parameters
from diffusion_study.studies import ndm_2d

LOGSNR = {"logsnr_max": 10.0, "logsnr_min": -10.0}
VARIANTS = ("ddpm_bound", "ndm_bound", "ddpm_simple", "ddpm_cont", "ndm_cont")
RATIOS = {"ndm_bound / ddpm_bound": ("ndm_bound", "ddpm_bound"),
          "ndm_cont / ddpm_cont": ("ndm_cont", "ddpm_cont"),
          "ndm_bound / ddpm_simple": ("ndm_bound", "ddpm_simple")}


def networks(config: str, seed: int):
    """(x_hat net factory, F process factory, batch) for a configuration; nets rebuilt from `seed` on each call."""
    if config == "mlp":
        x = checkerboard(256, torch.Generator().manual_seed(seed))
        return (lambda: TimeMLP(2, 128, 3, 32, "silu"),
                lambda sched: transforms.mlp_forward(sched, hidden=128, depth=3), x)
    if config == "ensemble":
        G = 15
        x = checkerboard(G * 64, torch.Generator().manual_seed(seed)).reshape(G, 64, 2)
        return (lambda: EnsembleMLP(G, 2, 64, 3, 32, "silu"),
                lambda sched: transforms.mlp_forward(sched, hidden=64, depth=3, members=G), x)
    if config == "unet":
        x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        return (lambda: UNet(1, 32, (1, 2)), lambda sched: transforms.unet_forward(sched, 1, 32, (1, 2)), x)
    raise ValueError(f"unknown configuration {config!r}")


def variant(name: str, config: str, seed: int):
    """(model, loss(model, generator) -> [*batch], batch, F net or None) for one variant."""
    make_x, make_f, x = networks(config, seed)
    discrete = logsnr_cosine_schedule(1000, **LOGSNR)
    continuous = continuous_schedule("logsnr_cosine", **LOGSNR)
    sched = continuous if name.endswith("cont") else discrete
    torch.manual_seed(seed)
    x_net = transforms.PreconditionedX0(make_x(), sched, data_std=float(x.std()))
    process = GaussianForward(sched) if name.startswith("ddpm") else make_f(sched)
    if name.startswith("ndm"):  # a trained F is not the identity: give its last layer weights
        torch.nn.init.normal_(list(process.net.parameters())[-2], std=0.05)
    model = Denoiser(x_net, process, prediction="x0")
    decoder = GaussianDecoder()
    if name.endswith("bound"):
        loss = lambda m, g: vlb_terms(m, x, decoder=decoder, n_timesteps=1, generator=g).total  # noqa: E731
    elif name.endswith("cont"):
        loss = lambda m, g: continuous_time.continuous_bound_terms(m, x, decoder=decoder, generator=g).total  # noqa: E731
    else:
        loss = lambda m, g: simple_loss(m, x, generator=g)  # noqa: E731
    return model, loss, getattr(process, "net", None)


def step_fn(model, loss, seed: int):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)

    def step():
        value = loss(model, generator).mean(-1).sum()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return step


def count_calls(model, loss, f_net) -> dict:
    modules = {"x_hat": model.net.net} | ({"F": f_net} if f_net is not None else {})
    with ndm_2d.CallCounter(**modules) as counter:
        loss(model, torch.Generator().manual_seed(0)).mean().backward()
    return counter.counts


def run_config(config: str, repeats: int, steps: int, warmup: int, seed: int) -> dict:
    built = {name: variant(name, config, seed) for name in VARIANTS}
    steps_fns = {name: step_fn(m, loss, seed) for name, (m, loss, _) in built.items()}
    names = list(VARIANTS)
    times = {name: [] for name in names}
    for r in range(warmup + repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            for _ in range(steps):
                steps_fns[name]()
            if r >= warmup:
                times[name].append((time.perf_counter() - start) / steps)
    med = {name: statistics.median(v) for name, v in times.items()}
    out = {"variants": {}, "ratios": {k: med[a] / med[b] for k, (a, b) in RATIOS.items()}}
    for name, (model, loss, f_net) in built.items():
        out["variants"][name] = {
            "ms_per_step_median": 1e3 * med[name], "ms_per_step_min": 1e3 * min(times[name]),
            "ms_per_step_max": 1e3 * max(times[name]), "network_calls_per_step": count_calls(model, loss, f_net),
            "parameters": count_parameters(model), "seconds": times[name],
        }
    return out


def markdown(payload: dict) -> str:
    lines = [f"# ndm_step: {payload['provenance']['device']}, torch {payload['provenance']['torch']}, "
             f"commit {str(payload['provenance']['git_commit'])[:7]}", "",
             f"Command: `{payload['command']}`", ""]
    for config, res in payload["configs"].items():
        lines += [f"## {config}", "", "| variant | parameters | network calls / step | ms / step (median) | min | max |",
                  "|---|---|---|---|---|---|"]
        for name, v in res["variants"].items():
            calls = ", ".join(f"{k} {n}" for k, n in v["network_calls_per_step"].items())
            lines.append(f"| {name} | {v['parameters']:,} | {calls} | {v['ms_per_step_median']:.2f} | "
                         f"{v['ms_per_step_min']:.2f} | {v['ms_per_step_max']:.2f} |")
        lines += ["", "Ratios of medians: " + "; ".join(f"{k} = {v:.2f}" for k, v in res["ratios"].items()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["mlp", "ensemble"], choices=["mlp", "ensemble", "unet"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ndm_step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    payload = {
        "benchmark": "ndm_step",
        "command": "python bench/ndm_step.py " + " ".join(sys.argv[1:]),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "configs": {c: run_config(c, args.repeats, args.steps, args.warmup, args.seed) for c in args.configs},
    }
    payload["provenance"] = provenance(time.perf_counter() - began)
    write_json_atomic(args.out, payload)
    args.out.with_suffix(".md").write_text(markdown(payload) + "\n")
    print(markdown(payload))


if __name__ == "__main__":
    main()
