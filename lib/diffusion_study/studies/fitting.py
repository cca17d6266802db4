"""Training one configuration with snapshots: the EMA model after given step counts, and at matched wall time.

`fit` wraps `training.loop.train` (resumed from a checkpoint between marks, so a snapshot is the same run
stopped early); with `match_seconds` it also keeps the EMA model at the first step at which the run's own wall
time reaches a budget (another model's training time in the same run: matched wall time at the cost ratio
measured there, not one assumed beforehand). Chapters 4 and 5 use it.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from diffusion_study.base.args import positive_int
from diffusion_study.nets.models import count_parameters
from diffusion_study.training.loop import train


@dataclass
class Fit:
    """EMA models after `marks` optimizer steps (snapshots), the wall time of training up to each mark, and the
    parameter counts. models[m] is in eval mode; seconds[m] counts only the steps up to m. `matched`: the step
    at which the run's wall time first reached `fit`'s match_seconds (its model is in `models` too), else None."""

    models: dict[int, nn.Module] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    matched: int | None = None

    @property
    def steps(self) -> int:
        return max(self.models)

    @property
    def final(self) -> nn.Module:
        return self.models[self.steps]


def fit(model: nn.Module, loss_fn, data: Tensor, steps: int, *, batch_size: int, lr: float, ema_decay: float,
        seed: int, snapshots=(), match_seconds: float | None = None) -> Fit:
    """Train `model` (in place) for `steps` Adam steps with `train.train`; keep the EMA model at every step count
    in `snapshots` (each < steps) and at `steps`. The run is resumed from a checkpoint between marks, so the
    snapshot is the same run stopped early: its wall time is the time up to it.

    match_seconds (matched wall time, e.g. DDPM's `seconds[steps]` of the same seed): also keep the EMA model
    after the first step at which this run's wall time (since `train` was called, summed over marks) reaches
    match_seconds; `Fit.matched` is that step (`steps` if the run ends sooner). The matched step is measured in
    this run, so it carries the run's own cost ratio (and its timing noise), not one assumed beforehand."""
    steps = positive_int("steps", steps)
    marks = sorted({int(m) for m in snapshots if 0 < int(m) < steps} | {steps})
    out = Fit(parameters={"total": count_parameters(model)})
    total = 0.0
    clock = {"start": 0.0}

    def keep_at_time(step, net, ema):
        elapsed = total + time.perf_counter() - clock["start"]
        if out.matched is None and elapsed >= match_seconds:
            out.matched = step
            out.models[step] = copy.deepcopy(ema if ema is not None else net).eval()
            out.seconds[step] = elapsed

    timed = {} if match_seconds is None else {"callback": keep_at_time, "callback_every": 1}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "run.pt"
        for mark in marks:
            clock["start"] = time.perf_counter()
            res = train(model, loss_fn, data, steps=mark, batch_size=batch_size, lr=lr, ema_decay=ema_decay,
                        seed=seed, checkpoint_path=ckpt, checkpoint_every=steps, progress=False, **timed)
            total += res.seconds
            out.models[mark] = copy.deepcopy(res.ema if res.ema is not None else res.model).eval()  # no EMA: the model
            out.seconds[mark] = total
    if match_seconds is not None and out.matched is None:
        out.matched = steps
    return out
