"""Chapter 4 (NDM in 2D): the chapter's model (`toy_model`), per-member data of an ensemble, and the
measurements its claims read: path curvature, ||F|| against the data's spread while training
(`TransformTrace`), steps needed for a tolerance, network calls per sampling step (`CallCounter`).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

from diffusion_study.base.args import choose, positive_int
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.processes import GaussianForward
from diffusion_study.nets.models import EnsembleMLP
from diffusion_study.nets.transforms import PreconditionedX0, mlp_forward


def path_curvature(path: Tensor) -> Tensor:
    """Mean distance of a path from its chord, per unit arc length, over the chord's length; [*batch].

    path: [K + 1, *batch, D] (points along each trajectory, first to last). Each segment's mid-point
    distance is weighted by the segment's length, so the value does not depend on where the solver
    put its points. 0 for a straight path whatever its speed; a half circle gives 1 / pi.
    """
    start, end = path[0], path[-1]
    chord = end - start  # [*batch, D]
    length = chord.norm(dim=-1).clamp_min(1e-12)
    mid = (path[1:] + path[:-1]) / 2 - start  # [K, *batch, D]
    along = ((mid * chord).sum(-1) / length**2).clamp(0, 1)  # projection onto the segment
    dist = (mid - along[..., None] * chord).norm(dim=-1)  # [K, *batch]
    seg = (path[1:] - path[:-1]).norm(dim=-1)  # [K, *batch]
    return (dist * seg).sum(0) / seg.sum(0).clamp_min(1e-12) / length


def transform_norm_ratio(process, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """(E ||F(x, t)|| / E ||x||, std of F(x, t) over x / std of x), each [*models] (claim N6).

    x: [*models, N, D]. The first falls to 0 when F collapses towards 0; the second when F forgets x.
    """
    with torch.no_grad():
        f = process.transform(x, torch.tensor(float(t), dtype=torch.float64))
    norm = f.norm(dim=-1).mean(-1) / x.norm(dim=-1).mean(-1)
    spread = f.std(-2).norm(dim=-1) / x.std(-2).norm(dim=-1)
    return norm, spread


def steps_needed(errors: Tensor, steps, tolerance: float) -> Tensor:
    """The smallest number of steps whose error is at most `tolerance` (inf where none is).

    errors: [len(steps), *batch] (e.g. endpoint error or a sample distance per step count); [*batch].
    """
    steps = torch.as_tensor(steps, dtype=torch.float64)
    ok = errors <= tolerance
    first = torch.where(ok, steps.reshape((-1,) + (1,) * (errors.ndim - 1)), torch.tensor(math.inf, dtype=torch.float64))
    return first.min(0).values


class CallCounter(contextlib.AbstractContextManager):
    """Count the forward calls of modules (e.g. F's network and x_hat's): `with CallCounter(f=..., x_hat=...) as c:`,
    then c.counts == {'f': n, 'x_hat': m}. A call inside torch.func.jvp counts once."""

    def __init__(self, **modules: nn.Module):
        self.modules, self.counts, self._handles = modules, {k: 0 for k in modules}, []

    def __enter__(self):
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(lambda *_, name=name: self._hit(name)))
        return self

    def _hit(self, name: str) -> None:
        self.counts[name] += 1

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False


# ---------------------------------------------------------------------------------------
# The x_hat network
# ---------------------------------------------------------------------------------------


def toy_model(schedule, kind: str, members: int, *, hidden: int = 64, depth: int = 3, time_dim: int = 32,
              data_std: float = 1.0, generator=None) -> Denoiser:
    """Chapter 4's 2D model, an ensemble of `members`: x_hat = PreconditionedX0(EnsembleMLP), prediction 'x0';
    kind 'ddpm' (F = identity) or 'ndm' (an EnsembleMLP F of the same size, F = x at the start).

    The x_hat networks are drawn first from `generator`, so DDPM and NDM of one seed start from the same
    x_hat weights.
    """
    choose("model", kind, ("ddpm", "ndm"))
    net = EnsembleMLP(members, 2, hidden, depth, time_dim, "silu", generator=generator)
    x_net = PreconditionedX0(net, schedule, data_std)
    process = GaussianForward(schedule) if kind == "ddpm" else mlp_forward(
        schedule, 2, hidden, depth, time_dim, members=members, generator=generator)
    return Denoiser(x_net, process, prediction="x0")


def member_columns(batch: Tensor) -> Tensor:
    """Each ensemble member's own data: data [N, G, D] indexed by `train` as [G, B, G, D] -> [G, B, D],
    member g reading column g (chapter 4 trains one ensemble on several data sets and seeds)."""
    members = torch.arange(batch.shape[0], device=batch.device)
    return batch[members, :, members]


class TransformTrace:
    """A loss function that also records ||F|| while it trains (claim N6).

    `TransformTrace(loss_fn, probe, every, t)` is called as loss_fn(model, batch, generator); every
    `every` calls it appends (step, norm ratio [G], spread ratio [G]) of `transform_norm_ratio(
    model.process, probe, t)` to `self.records`, probe: [G, N, D]. Step 0 is recorded at the first call.
    """

    def __init__(self, loss_fn, probe: Tensor, every: int, t: float = 0.5):
        self.loss_fn, self.probe, self.every, self.t = loss_fn, probe, positive_int("every", every), t
        self.calls, self.records = 0, []

    def __call__(self, model, batch, generator) -> Tensor:
        if self.calls % self.every == 0:
            norm, spread = transform_norm_ratio(model.process, self.probe, self.t)
            self.records.append((self.calls, norm, spread))
        self.calls += 1
        return self.loss_fn(model, batch, generator)


# ---------------------------------------------------------------------------------------------
# Baselines and the adequacy gate (issue 20): the structure a model's samples must show
# ---------------------------------------------------------------------------------------------

STRUCTURE = {  # data set -> (what the structure metric measures, higher is better?)
    "checkerboard": ("share of samples on the board's occupied squares", True),
    "two_moons": ("share of samples within 3 jitter std of a moon", True),
    "two_gaussians": ("NLL of samples under the true density (nats)", False),
}


def structure(name: str, samples: Tensor) -> Tensor:
    """The structure metric of `STRUCTURE[name]` for samples [*batch, N, 2]: [*batch] float64. Checkerboard:
    `eval.baselines.checkerboard_mass`; two moons: the two shares of `eval.baselines.moons_mass` summed; two
    Gaussians: -E log p(x) under `toy2d.two_gaussians()`'s exact density."""
    from diffusion_study.data.toy2d import two_gaussians
    from diffusion_study.eval import baselines

    choose("data set", name, tuple(STRUCTURE))
    x = samples.detach().cpu().double()
    if name == "checkerboard":
        return torch.as_tensor(baselines.checkerboard_mass(x), dtype=torch.float64)
    if name == "two_moons":
        upper, lower = baselines.moons_mass(x)
        return torch.as_tensor(upper, dtype=torch.float64) + torch.as_tensor(lower, dtype=torch.float64)
    mixture = two_gaussians()
    logp = mixture.log_prob(x.reshape(-1, 2)).reshape(x.shape[:-1])
    return -logp.mean(-1)


def gaussian_samples(train: Tensor, n: int, seed: int = 0) -> Tensor:
    """n samples [G, n, 2] of the moment-matched Gaussian of each member's training points, train [N, G, 2]
    (the ensemble's layout; `eval.baselines.GaussianFit`), from one torch.Generator seeded with `seed`."""
    from diffusion_study.eval.baselines import GaussianFit

    g = torch.Generator().manual_seed(seed)
    return torch.stack([GaussianFit.fit(train[:, m].cpu()).sample(n, g) for m in range(train.shape[1])])


def gaussian_nll(train: Tensor, test: Tensor) -> Tensor:
    """Mean NLL (nats per point) of each member's test points [G, M, 2] under the Gaussian with the mean and
    covariance of its training points [N, G, 2]: the likelihood a model must beat; [G] float64."""
    from diffusion_study.eval.baselines import GaussianFit

    return torch.stack([-GaussianFit.fit(train[:, m].cpu()).log_prob(test[m].cpu()).mean()
                        for m in range(train.shape[1])])
