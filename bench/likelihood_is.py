"""Likelihood: the full T-step bound against the importance-sampled bound (K steps per example).

A time-conditioned MLP (TimeMLP(64, hidden=256, depth=3)) on the flattened 8x8 scikit-learn digits,
trained briefly with L_simple (linear T = 1000, eps-prediction, x0_hat clipped to [-1, 1]), then the 297 test digits' negative ELBO in bits/dim
(`likelihood.bits_per_dim`, `DiscretizedGaussianDecoder(17)`, posterior reverse variance):

    full   every one of the T - 1 diffusion KL terms per example (`n_timesteps=None`);
    is_K   K of them per example, drawn uniformly (`n_timesteps=K`; rescaled by (T - 1) / K: the
           importance-sampled estimator with the uniform proposal, unbiased).

Each round evaluates the full bound once and each K once (interleaved, order rotated; new noise
every time). An MLP rather than a U-Net keeps the full bound (T - 1 network calls on the test set)
affordable on two CPU cores; the cost ratio is the same for any network, since both estimators
make one batched call per diffusion term. Reported: time per evaluation, the cost ratio is_K / full (paired per round), and the
agreement |is_K - full| in units of the importance-sampled estimate's standard error (over the
examples, which includes its Monte-Carlo noise), per round: an unbiased estimate lands within one
standard error in about two rounds of three, so the target is read as "the median round is within 1 SE".

    .venv/bin/python bench/likelihood_is.py              # about 1 minute on 2 idle cores
"""

from __future__ import annotations

import argparse
import statistics

import common
import torch
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.likelihood import bits_per_dim
from diffusion_study.core.objectives import DiscretizedGaussianDecoder, simple_loss
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.images import load_image_dataset
from diffusion_study.nets.models import TimeMLP, count_parameters
from diffusion_study.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--K", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--T", type=int, default=1000)
    common.add_run_arguments(parser, repeats=5, threads=2)
    args = parser.parse_args()
    started, load = common.start_run(args)
    data = load_image_dataset("digits")
    torch.manual_seed(0)
    net = TimeMLP(64, hidden=256, depth=3)
    model = Denoiser(net, GaussianForward(discrete_schedule("linear", args.T)), prediction="eps", clip=(-1, 1))
    run = train(model, lambda m, x, g: simple_loss(m, x, generator=g), data.train.flatten(1), steps=args.train_steps,
                batch_size=128, lr=2e-3, ema_decay=None, seed=0, progress=False)
    model.eval()
    decoder = DiscretizedGaussianDecoder(data.levels)
    x = data.test.flatten(1)  # [297, 64]
    g = torch.Generator().manual_seed(1)
    estimates = {}

    def evaluate(name, K):
        def go():
            estimates.setdefault(name, []).append(
                bits_per_dim(model, x, decoder=decoder, batch_size=len(x), n_timesteps=K, generator=g))
        return go
    fns = {"full": evaluate("full", None), **{f"is_{K}": evaluate(f"is_{K}", K) for K in args.K}}
    raw = common.interleaved(fns, args.repeats, warmup=0)
    full = estimates["full"]
    rows = {}
    for name in fns:
        est = estimates[name]
        row = {"bits_per_dim": [e.mean for e in est], "stderr": [e.stderr for e in est],
               "terms_first_round": est[0].terms, "time": common.summary(raw[name])}
        if name != "full":
            z = [abs(e.mean - f.mean) / e.stderr for e, f in zip(est, full)]
            row["abs_diff_over_stderr"] = z
            row["within_1_stderr_rounds"] = sum(v <= 1 for v in z)
            row["abs_diff_over_stderr_median"] = statistics.median(z)
            row["cost_ratio_paired"] = common.paired(raw[name], raw["full"])
        rows[name] = row
        print(f"{name:7s} {statistics.median(raw[name]):7.2f} s  bits/dim "
              + ", ".join(f"{e.mean:.4f} +- {e.stderr:.4f}" for e in est)
              + (f"  |diff|/SE {', '.join(f'{v:.2f}' for v in row['abs_diff_over_stderr'])}, cost "
                 f"{row['cost_ratio_paired']:.3f}" if name != "full" else ""), flush=True)
    payload = {"parameters": {**vars(args), "network": {"TimeMLP": {"dim": 64, "hidden": 256, "depth": 3},
                                                        "parameters": count_parameters(net)},
                              "schedule": "linear", "prediction": "eps", "clip": [-1, 1], "n_test": len(x),
                              "decoder": f"DiscretizedGaussianDecoder({data.levels})", "variance": "posterior"},
               "train_seconds": run.seconds, "train_loss_last_50": run.losses[-50:].mean().item(),
               "estimators": rows,
               "note": "is_K: n_timesteps=K uniform draws of the T - 1 diffusion terms per example, rescaled by "
                       "(T - 1) / K; agreement in units of is_K's own standard error over the test examples"}
    common.write_result("likelihood_is", payload, started, args.out, load)


if __name__ == "__main__":
    main()
