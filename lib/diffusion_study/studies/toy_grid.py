"""The toy study (Klepper 2024) as one measured ablation grid (chapter 2).

The grid crosses a forward process, a schedule, a prediction target and a sampler, and
trains every (configuration, seed) as a member of ONE `EnsembleMLP`, so the whole grid is one
tensor program: one batched network call, one loss, one Adam step per training step.

Factors (the study's readings of the paper's terms, DESIGN.md):
    process  : 'stochastic'  z_t = alpha_t x + sigma_t eps, eps ~ N(0, I)           (DDPM)
               'noise_free'  z_t = alpha_t x                                        (Klepper's (a))
               'pairing'     z_t = alpha_t x + sigma_t G(x), G the Gaussianising map (Klepper's (b))
    target   : 'eps' ("noise sampling"), 'x0' ("whole-step": x0, then the posterior),
               'prev' ("single-step": z_{t-1/T} directly), 'score'
    schedule : 'linear', 'cosine' (T steps)
    sampler  : 'ancestral' (the process's own posterior, eta = 1), 'ddim' (eta = 0)
Undefined cells, handled here once: a noise-free process has no noise to predict, so 'eps'
and 'score' are refused (as `Denoiser` refuses them); the deterministic processes'
posterior q(z_s | z_t, x) is a point mass, so their ancestral sampler IS the deterministic
step and coincides with DDIM: those cells are not run twice (`sampler_applies`).

What "seed" means here: the members of one configuration differ by their initial weights
(drawn from one generator for the whole ensemble) and by their own batches, times and noise.

Conversions between targets live in `predictions` only; this module gathers per-member
coefficients and calls `predictions.target` / `predictions.to_x0` on each target's slice of
the member dimension (members are ordered target-major, so a slice is contiguous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from diffusion_study.base import rng
from diffusion_study.base.args import choose, positive_int
from diffusion_study.core.predictions import target as prediction_target
from diffusion_study.core.predictions import to_eps, to_x0
from diffusion_study.core.processes import (
    GaussianForward,
    NoiseFreeForward,
    StepCoefficients,
)
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.nets.models import EnsembleMLP, time_embedding

PROCESSES = ("stochastic", "noise_free", "pairing")
SCHEDULES = ("linear", "cosine")
TARGETS = ("eps", "x0", "prev", "score")
SAMPLERS = ("ancestral", "ddim")
SAMPLER_ETA = {"ancestral": 1.0, "ddim": 0.0}
READINGS = {"eps": "noise sampling", "x0": "whole-step", "prev": "single-step", "score": "score"}


# ---------------------------------------------------------------------------------------
# The Gaussianising pairing map and the pairing process
# ---------------------------------------------------------------------------------------


class GaussianisingMap:
    """The Rosenblatt map of a mixture of isotropic Gaussians (common std s) whose means differ
    only along x1 (chapter 2):  G(x) = (Phi^-1(F1(x1)), (x2 - m2) / s),
    F1(x1) = sum_k w_k Phi((x1 - m_k1) / s) the mixture's marginal CDF of x1. x2 is independent
    of x1 and N(m2, s^2) under every component, so G pushes the mixture to N(0, I) exactly. F1 is
    strictly increasing, so G is a bijection of R^2; `inverse` solves F1(x1) = Phi(u1) by bisection.

    Everything is float64 and tail-safe: F1 and 1 - F1 are compared in log space
    (log_ndtr), so |u1| up to ~35 inverts to rounding.
    """

    def __init__(self, mixture):
        means, covs = mixture.means.double(), mixture.covs.double()
        if means.shape[1] != 2:
            raise ValueError("the Gaussianising map is written for 2D mixtures")
        s2 = covs[0, 0, 0]
        if not torch.allclose(covs, s2 * torch.eye(2, dtype=torch.float64).expand_as(covs)):
            raise ValueError("every component must be isotropic with the same variance")
        if not torch.allclose(means[:, 1], means[0, 1].expand(len(means))):
            raise ValueError("the component means must differ only along x1")
        self.log_w = mixture.weights.double().log()  # [K]
        self.m1, self.m2, self.s = means[:, 0], float(means[0, 1]), float(s2.sqrt())

    def _log_cdfs(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        """log F1(x1) and log(1 - F1(x1)), each shaped like x1 (float64)."""
        u = (x1[..., None] - self.m1) / self.s  # [..., K]
        lower = torch.logsumexp(self.log_w + torch.special.log_ndtr(u), -1)
        upper = torch.logsumexp(self.log_w + torch.special.log_ndtr(-u), -1)
        return lower, upper

    def forward(self, x: Tensor) -> Tensor:
        """u = G(x): [..., 2] -> [..., 2] float64 (the lower or upper tail, whichever is smaller, inverted)."""
        x = x.double()
        lower, upper = self._log_cdfs(x[..., 0])
        u1 = torch.where(lower < math.log(0.5), torch.special.ndtri(lower.exp()), -torch.special.ndtri(upper.exp()))
        return torch.stack([u1, (x[..., 1] - self.m2) / self.s], -1)

    __call__ = forward

    def inverse(self, u: Tensor, iterations: int = 80) -> Tensor:
        """x = G^-1(u): [..., 2] -> [..., 2] float64. x1 is bracketed by m_min + s u1 <= x1 <= m_max + s u1
        (each component's CDF bounds F1 there) and found by `iterations` bisection steps on the
        increasing function log F1(x1) - log Phi(u1) (upper-tail form for u1 > 0)."""
        u = u.double()
        u1 = u[..., 0]
        lo, hi = self.m1.min() + self.s * u1, self.m1.max() + self.s * u1
        upper_tail = u1 > 0
        goal = torch.where(upper_tail, torch.special.log_ndtr(-u1), torch.special.log_ndtr(u1))
        for _ in range(positive_int("iterations", iterations)):
            mid = 0.5 * (lo + hi)
            lower, upper = self._log_cdfs(mid)
            too_small = torch.where(upper_tail, upper > goal, lower < goal)
            lo, hi = torch.where(too_small, mid, lo), torch.where(too_small, hi, mid)
        return torch.stack([0.5 * (lo + hi), self.m2 + self.s * u[..., 1]], -1)


def _interp(x: Tensor, xp: Tensor, fp: Tensor, slopes: tuple[float, float]) -> Tensor:
    """The piecewise-linear function through the knots (xp, fp) (both strictly increasing) at x,
    extended beyond the end knots by straight lines of the given (left, right) slopes."""
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    inside = f0 + (f1 - f0) * (x - x0) / (x1 - x0)
    return torch.where(x < xp[0], fp[0] + slopes[0] * (x - xp[0]),
                       torch.where(x > xp[-1], fp[-1] + slopes[1] * (x - xp[-1]), inside))


def _nearest_axes(vectors: Tensor) -> Tensor:
    """Eigenvectors (columns of an orthogonal [D, D]) reordered and sign-flipped so that column j points
    along +axis j where it can: the rotation nearest the identity. Without this, `eigh`'s ascending order
    and arbitrary signs would pair x1 with the second Gaussian coordinate (a swap, or a reflection), a
    valid but needlessly twisted bijection for a diffusion path alpha x + sigma G(x)."""
    axes = vectors.abs().argmax(0)  # the axis each column is nearest to
    if len(set(axes.tolist())) == vectors.shape[1]:
        vectors = vectors[:, torch.argsort(axes)]
    return vectors * torch.sign(torch.diagonal(vectors)).where(torch.diagonal(vectors) != 0, torch.ones(()))


class EmpiricalGaussianisingMap:
    """A Gaussianising bijection of R^2 estimated from training points alone (chapter 2, K2): one layer
    of iterative Gaussianisation (Chen and Gopinath 2000), G(x) = Psi(R^T (x - m)) with m the training
    mean, R the eigenvectors of the training covariance (ordered and signed to be nearest the identity,
    `_nearest_axes`), and Psi the coordinate-wise map
    u_j = Phi^-1(F_j(y_j)) with F_j the empirical CDF of coordinate j, interpolated linearly between
    `knots` quantiles (probabilities p_k spaced evenly in [0.5 / n, 1 - 0.5 / n] on the Gaussian scale)
    and continued linearly beyond the outer ones (the mean slope over the outer `tail` knots, default
    an eighth of them: the extreme quantiles alone are too few points to give a slope).

    Unlike `GaussianisingMap` it knows nothing of the mixture: it pushes the training points to an
    approximately standard Gaussian (exactly so in each coordinate of the rotated data), and it is a
    bijection (strictly increasing in each rotated coordinate), inverted exactly by `inverse`.
    Same interface: `map(x)` and `map.inverse(u)`, [..., 2] float64.
    """

    def __init__(self, train: Tensor, knots: int = 257, tail: int | None = None):
        x = train.double()
        n = len(x)
        if n < 2 * knots:
            knots = max(n // 2, 3)
        tail = max(knots // 8, 1) if tail is None else tail
        self.mean = x.mean(0)
        self.rotation = _nearest_axes(torch.linalg.eigh(torch.cov((x - self.mean).T))[1])  # [2, 2]
        y = (x - self.mean) @ self.rotation
        normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
        u = torch.linspace(float(normal.icdf(torch.tensor(0.5 / n))), float(normal.icdf(torch.tensor(1 - 0.5 / n))),
                           knots, dtype=torch.float64)
        probs = normal.cdf(u)
        self.knots, self.slopes = [], []
        for j in range(x.shape[1]):
            q = torch.quantile(y[:, j], probs)
            q = q + 1e-9 * torch.arange(knots, dtype=torch.float64) * q.abs().max()  # strictly increasing
            left = float((u[tail] - u[0]) / (q[tail] - q[0]))
            right = float((u[-1] - u[-1 - tail]) / (q[-1] - q[-1 - tail]))
            self.knots.append((q, u))
            self.slopes.append((left, right))

    def forward(self, x: Tensor) -> Tensor:
        """u = G(x): [..., 2] -> [..., 2] float64."""
        y = (x.double() - self.mean) @ self.rotation
        return torch.stack([_interp(y[..., j], q, u, s) for j, ((q, u), s) in enumerate(zip(self.knots, self.slopes))],
                           -1)

    __call__ = forward

    def inverse(self, u: Tensor) -> Tensor:
        """x = G^-1(u): [..., 2] -> [..., 2] float64 (the same pieces, read the other way)."""
        u = u.double()
        y = torch.stack([_interp(u[..., j], uk, q, (1 / s[0], 1 / s[1]))
                         for j, ((q, uk), s) in enumerate(zip(self.knots, self.slopes))], -1)
        return y @ self.rotation.T + self.mean


class PairingForward(GaussianForward):
    """The deterministic invertible process z_t = alpha_t x + sigma_t G(x) (chapter 2; Klepper's
    'deterministic diffusion' (b)): DDPM's marginal path with the noise replaced by each point's
    fixed Gaussian partner G(x). z_t determines G(x) given x, so q(z_s | z_t, x) is the point mass at
    alpha_s x + sigma_s (z_t - alpha_t x) / sigma_t: DDIM's eta = 0 step, whatever eta is asked
    for (the step's variances are all 0). `sample` ignores the noise it is given. There is no
    variational bound (a KL between point masses); `held_out_bound` refuses this process.
    """

    deterministic = True

    def __init__(self, schedule, pairing: GaussianisingMap):
        super().__init__(schedule)
        self.pairing = pairing

    def noise(self, x: Tensor) -> Tensor:
        """G(x) in x's dtype and device: the 'noise' this process pairs with x."""
        return self.pairing(x.cpu()).to(x)

    def sample(self, x: Tensor, t, noise: Tensor | None = None) -> Tensor:
        """z_t = alpha_t x + sigma_t G(x) (the `noise` argument is ignored)."""
        return super().sample(x, t, self.noise(x))

    def step_coefficients(self, s, t, eta: float = 1.0) -> StepCoefficients:
        c = super().step_coefficients(s, t, 0.0)
        zero = torch.zeros_like(c.var)
        return c._replace(var=zero, posterior_var=zero, transition_var=zero)


def make_process(name: str, schedule, pairing: GaussianisingMap | None = None):
    """The forward process `name` ('stochastic', 'noise_free', 'pairing') on `schedule` (chapter 2)."""
    choose("process", name, PROCESSES)
    if name == "stochastic":
        return GaussianForward(schedule)
    if name == "noise_free":
        return NoiseFreeForward(schedule)
    if pairing is None:
        raise ValueError("the 'pairing' process needs the Gaussianising map")
    return PairingForward(schedule, pairing)


def is_deterministic(process: str) -> bool:
    """True for the processes whose posterior is a point mass ('noise_free', 'pairing')."""
    return choose("process", process, PROCESSES) != "stochastic"


def is_defined(process: str, target: str) -> bool:
    """Whether a network can be trained for `target` on `process`: a noise-free process has no
    noise, so 'eps' and 'score' are undefined on it (the `Denoiser` refuses them too)."""
    choose("target", target, TARGETS)
    return not (choose("process", process, PROCESSES) == "noise_free" and target in ("eps", "score"))


def sampler_applies(process: str, sampler: str) -> bool:
    """Whether (process, sampler) is a distinct cell: ancestral sampling of a deterministic process
    draws from a point-mass posterior, i.e. it is the DDIM step, so only 'ddim' is run there."""
    return choose("sampler", sampler, SAMPLERS) == "ddim" or not is_deterministic(process)


# ---------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One trained configuration of the grid (a seed makes it a member)."""

    process: str
    schedule: str
    target: str

    @property
    def label(self) -> str:
        return f"{self.process}/{self.schedule}/{self.target}"


@dataclass(frozen=True)
class GridSpec:
    """The factors of the grid, validated: each level must be known, seeds and T positive.

    Members are ordered target-major (target, process, schedule, seed), so each target is a
    contiguous slice of the member dimension and each configuration's seeds are adjacent.
    """

    processes: tuple[str, ...] = PROCESSES
    schedules: tuple[str, ...] = SCHEDULES
    targets: tuple[str, ...] = TARGETS
    samplers: tuple[str, ...] = SAMPLERS
    seeds: int = 5
    T: int = 1000

    def __post_init__(self):
        for kind, levels, valid in (("process", self.processes, PROCESSES), ("schedule", self.schedules, SCHEDULES),
                                    ("target", self.targets, TARGETS), ("sampler", self.samplers, SAMPLERS)):
            if isinstance(levels, str) or not len(levels):
                raise ValueError(f"{kind} levels must be a non-empty list of {', '.join(map(repr, valid))}; "
                                 f"got {levels!r}")
            for level in levels:
                choose(kind, level, valid)
            if len(set(levels)) != len(levels):
                raise ValueError(f"{kind} levels repeat: {list(levels)}")
            object.__setattr__(self, {"process": "processes", "schedule": "schedules", "target": "targets",
                                      "sampler": "samplers"}[kind], tuple(levels))
        object.__setattr__(self, "seeds", positive_int("seeds", self.seeds))
        object.__setattr__(self, "T", positive_int("T", self.T))
        if not self.configs:
            raise ValueError("no defined configuration: a noise-free process needs target 'x0' or 'prev'")

    @property
    def configs(self) -> tuple[Config, ...]:
        """The defined configurations in member order."""
        order = [t for t in TARGETS if t in self.targets]
        return tuple(Config(p, s, t) for t in order for p in PROCESSES if p in self.processes
                     for s in SCHEDULES if s in self.schedules if is_defined(p, t))

    @property
    def members(self) -> tuple[tuple[Config, int], ...]:
        """(configuration, seed index) of every ensemble member, G = len(configs) * seeds."""
        return tuple((c, k) for c in self.configs for k in range(self.seeds))

    def runs(self) -> list[tuple[Config, str]]:
        """The distinct (configuration, sampler) cells, in member order then sampler order."""
        return [(c, s) for c in self.configs for s in self.samplers if sampler_applies(c.process, s)]

    def target_slices(self) -> list[tuple[str, slice]]:
        """(target, slice of the member dimension) for each target present."""
        out, start = [], 0
        for t in TARGETS:
            n = sum(1 for c in self.configs if c.target == t) * self.seeds
            if n:
                out.append((t, slice(start, start + n)))
                start += n
        return out

    def member_index(self, config: Config) -> slice:
        """The members (seeds) of `config`: a slice of the member dimension."""
        i = self.configs.index(config)
        return slice(i * self.seeds, (i + 1) * self.seeds)


def training_steps(epochs: int, n_train: int, batch_size: int) -> int:
    """Optimizer steps for `epochs` passes over n_train points in batches of batch_size: ceil(E N / B)."""
    epochs, n_train = positive_int("epochs", epochs), positive_int("n_train", n_train)
    return math.ceil(epochs * n_train / positive_int("batch_size", batch_size))


def ensemble_forward(net: EnsembleMLP, z: Tensor, features: Tensor) -> Tensor:
    """An unconditional EnsembleMLP's forward with precomputed time features (chapter 2):
    z [G, B, D]; features [G, B, time_dim] (one time per example, e.g. rows of `time_features`)
    or [1, 1, time_dim] (one time for the whole batch, as in a sampler step, where the time
    features' share of the first layer, emb W0[D:], is computed once). Returns [G, B, D], equal to
    `net(z, t)` up to float rounding (a test checks it); it skips the sin/cos of every example.
    """
    G, B, D = z.shape
    assert net.num_classes == 0 and (G, D) == (net.members, net.dim), f"z {tuple(z.shape)}"
    w0 = net.weights[0]  # [G, D + time_dim, hidden]
    if features.shape[:2] == (1, 1):
        bias = torch.baddbmm(net.biases[0], features.expand(G, 1, -1), w0[:, D:])  # [G, 1, hidden]
        h = torch.baddbmm(bias, z, w0[:, :D])  # [G, B, hidden]
    else:
        h = torch.baddbmm(net.biases[0], torch.cat([z, features], 2), w0)
    relu = isinstance(net.act, nn.ReLU)
    for w, b in zip(net.weights[1:], net.biases[1:]):
        h = torch.baddbmm(b, h.relu_() if relu else net.act(h), w)  # in place: h is not needed again
    return h  # [G, B, D]


def time_features(T: int, time_dim: int) -> Tensor:
    """The networks' time features at every step, time_embedding(i / T) for i = 0..T: [T + 1, time_dim]
    (time i / T computed in float64 and cast, as `Schedule.time` does)."""
    time = (torch.arange(T + 1, dtype=torch.float64) / positive_int("T", T)).float()
    return time_embedding(time, time_dim)


def sub_ensemble(net: EnsembleMLP, index) -> EnsembleMLP:
    """A new EnsembleMLP holding copies of the members `index` (a slice or list) of `net`."""
    members = list(range(net.members))[index] if isinstance(index, slice) else list(index)
    out = EnsembleMLP(len(members), net.dim, net.hidden, net.depth, net.time_dim, net.activation)
    with torch.no_grad():
        for dst, src in zip(list(out.weights) + list(out.biases), list(net.weights) + list(net.biases)):
            dst.copy_(src[members])
    return out.to(net.weights[0].device)


class ToyGrid(nn.Module):
    """Every member of a `GridSpec` as one EnsembleMLP with per-member coefficient tables (chapter 2).

    Buffers: `coef` [G, T + 1, 4] float32 = (alpha_i, sigma_i, k_i, c_i) of each member's process
    at step i, where (k, c) are the (x_coef, noise) of the member's own posterior for the step
    i -> i - 1 (what 'prev' predicts: z_{i-1} = k x0 + c z_i); `noise_mask` [G, 2] = (stochastic,
    pairing). `train(grid, ToyGrid.loss_fn, grid.training_data(x), ...)` trains all members at once.
    """

    def __init__(self, spec: GridSpec, pairing: GaussianisingMap, *, hidden: int = 20, depth: int = 2,
                 time_dim: int = 32, generator: torch.Generator | None = None,
                 clip: tuple[float, float] | None = None):
        super().__init__()
        self.spec, self.pairing, self.clip = spec, pairing, clip
        self.members = len(spec.members)  # train() draws [G, B] batches for models with `members`
        self.net = EnsembleMLP(self.members, 2, hidden, depth, time_dim, "relu", generator)
        self.schedules = {name: discrete_schedule(name, spec.T) for name in spec.schedules}
        self.processes = {(p, s): make_process(p, self.schedules[s], pairing)
                          for p in spec.processes for s in spec.schedules}
        rows = [self._coefficients(self.processes[c.process, c.schedule]) for c, _ in spec.members]
        self.register_buffer("coef", torch.stack(rows).float())  # [G, T + 1, 4]
        mask = [[c.process == "stochastic", c.process == "pairing"] for c, _ in spec.members]
        self.register_buffer("noise_mask", torch.tensor(mask, dtype=torch.float32))  # [G, 2]
        self.register_buffer("features", time_features(spec.T, time_dim))  # [T + 1, time_dim]
        self.slices = spec.target_slices()

    def _coefficients(self, process) -> Tensor:
        """(alpha, sigma, k, c) at steps i = 0..T of one process: [T + 1, 4] float64 (row 0: k = 1, c = 0)."""
        T = self.spec.T
        i = torch.arange(T + 1, dtype=torch.float64)
        t, s = i / T, (i - 1).clamp(min=0) / T
        step = process.step_coefficients(s[1:], t[1:])
        k = torch.cat([torch.ones(1, dtype=torch.float64), step.x_coef])
        c = torch.cat([torch.zeros(1, dtype=torch.float64), step.noise])
        return torch.cat([process.alpha_sigma(t), k[:, None], c[:, None]], -1)

    def process_of(self, g: int):
        """The forward process object of member g."""
        config, _ = self.spec.members[g]
        return self.processes[config.process, config.schedule]

    def scales(self, index: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """(alpha, sigma, (k, c)) of each member at integer steps `index` [G, *rest]: each [G, *rest, 1]."""
        G, width = self.members, self.spec.T + 1
        rows = torch.arange(G, device=index.device).reshape((G,) + (1,) * (index.ndim - 1))
        flat = (rows * width + index).reshape(-1)  # one index_select on the flattened table
        table = self.coef.reshape(G * width, 4).index_select(0, flat).reshape(index.shape + (4,))
        a, s, k, c = table.unsqueeze(-2).unbind(-1)
        return a, s, (k, c)

    def network(self, z: Tensor, index: Tensor) -> Tensor:
        """The raw outputs of every member at z [G, B, 2] and steps index [G, B] (time i / T)."""
        emb = self.features.index_select(0, index.reshape(-1)).reshape(index.shape + (-1,))
        return ensemble_forward(self.net, z, emb)

    def per_target(self, fn, *tensors) -> Tensor:
        """cat over targets of fn(kind, *[t[slice] for t in tensors]) along the member dim."""
        return torch.cat([fn(kind, *(_take(x, sl) for x in tensors)) for kind, sl in self.slices])

    # Training --------------------------------------------------------------------------
    def loss_terms(self, x: Tensor, paired: Tensor, index: Tensor, eps: Tensor) -> Tensor:
        """Per-example L_simple of every member, [G, B], for given steps and noise (chapter 2):
        z = alpha x + sigma n with n = eps (stochastic), 0 (noise-free) or G(x) (pairing);
        loss = mean over the 2 coordinates of (net(z, i/T) - target)^2, the target from
        `predictions.target` on each target's slice. x, paired (= G(x)), eps: [G, B, 2]; index [G, B]."""
        noise = eps * self.noise_mask[:, None, 0:1] + paired * self.noise_mask[:, None, 1:2]
        alpha, sigma, step = self.scales(index)
        z = alpha * x + sigma * noise
        out = self.network(z, index)
        goal = self.per_target(lambda kind, *a: prediction_target(kind, a[0], a[1], a[2], a[3], (a[4], a[5])),
                               x, noise, alpha, sigma, *step)
        return (out - goal).pow(2).sum(-1) / x.shape[-1]

    def loss(self, batch: Tensor, generator=None) -> Tensor:
        """`loss_terms` on a batch [G, B, 4] = (x, G(x)) (see `training_data`), with steps
        i ~ U{1..T} and eps ~ N(0, I) drawn from `generator`: [G, B]."""
        x, paired = batch[..., :2], batch[..., 2:]
        index = rng.randint(1, self.spec.T + 1, x.shape[:-1], x, generator)
        return self.loss_terms(x, paired, index, rng.randn(x.shape, x, generator))

    def training_data(self, x: Tensor) -> Tensor:
        """Training points with their Gaussian partners, [N, 4] = (x, G(x)): one gather per step."""
        return torch.cat([x, self.pairing(x.cpu()).to(x)], -1)

    @staticmethod
    def loss_fn(model: "ToyGrid", batch, generator) -> Tensor:
        """The `train` signature: loss_fn(model, batch, generator) -> [G, B]."""
        return model.loss(batch, generator)

    # What the networks predict ----------------------------------------------------------
    def implied(self, z: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) of every member at z [G, B, 2], steps index [G, B] (unclipped; chapter 2, K4)."""
        alpha, sigma, step = self.scales(index)
        out = self.network(z, index)
        x0 = self.per_target(lambda kind, o, zz, a, s, k, c: to_x0(kind, o, zz, a, s, (k, c)),
                             out, z, alpha, sigma, *step)
        eps = self.per_target(lambda kind, o, zz, a, s, k, c: to_eps(kind, o, zz, a, s, (k, c)),
                              out, z, alpha, sigma, *step)
        return x0, eps

    def terminal(self, x: Tensor) -> Tensor:
        """Each member's z_1 for data x [N, 2]: alpha_T x + sigma_T n(x), n = G(x) (pairing and
        stochastic alike; sigma_T = 0 for noise-free); [G, N, 2]."""
        alpha, sigma, _ = self.scales(torch.full((self.members,), self.spec.T, device=x.device))
        return alpha[:, None] * x + sigma[:, None] * self.pairing(x.cpu()).to(x)

    # Sampling ----------------------------------------------------------------------------
    def step_table(self, etas) -> Tensor:
        """Sampler constants [T, G, S, 3] = (x_coef, noise, std) of each member's own posterior
        q(z_s | z_t, x0_hat) with DDIM's eta = etas[j] for sampler j; row j is the step
        t = (T - j) / T -> s = (T - j - 1) / T. Computed once per (process, schedule), cast once."""
        T = self.spec.T
        t = torch.arange(T, 0, -1, dtype=torch.float64) / T  # [T] descending
        s = torch.arange(T - 1, -1, -1, dtype=torch.float64) / T
        per_process = {}
        for key, proc in self.processes.items():
            cols = [proc.step_coefficients(s, t, eta) for eta in etas]
            per_process[key] = torch.stack([torch.stack([c.x_coef, c.noise, c.var.sqrt()], -1) for c in cols], 1)
        rows = [per_process[c.process, c.schedule] for c, _ in self.spec.members]  # each [T, S, 3]
        return torch.stack(rows, 1).to(self.coef)  # [T, G, S, 3]

    @torch.no_grad()
    def sample(self, z: Tensor, etas, generator=None, record_every: int | None = None,
               record_points: int = 0) -> tuple[Tensor, Tensor | None]:
        """Sample every member with S samplers at once (chapter 2): z [G, S, N, 2] at t = 1 -> x [G, S, N, 2].

        Sampler j uses DDIM's eta = etas[j] on each member's own posterior (ddim_sample's step:
        z_s = x_coef x0_hat + noise z_t + std n); x0_hat from `predictions.to_x0`, clamped to `clip`.
        With record_every, also returns the first `record_points` points of each (member, sampler)
        every record_every steps and at the end: [R, G, S, record_points, 2] (R = T // every + 1).
        """
        G, S, N, D = z.shape
        assert G == self.members and len(etas) == S, f"z {tuple(z.shape)}, {len(etas)} etas"
        table = self.step_table(etas)
        T = self.spec.T
        trace = [z[:, :, :record_points].clone()] if record_every else None
        noisy = [j for j, eta in enumerate(etas) if eta > 0]
        for j in range(T):
            i = T - j
            out = ensemble_forward(self.net, z.reshape(G, S * N, D), self.features[i].reshape(1, 1, -1))
            out = out.reshape(G, S, N, D)
            alpha, sigma, (k, c) = self.scales(torch.full((G,), i, device=z.device))  # each [G, 1]
            alpha, sigma, k, c = (v[:, :, None, None] for v in (alpha, sigma, k, c))  # [G, 1, 1, 1]
            x0 = self.per_target(lambda kind, o, zz, a, s, kk, cc: to_x0(kind, o, zz, a, s, (kk, cc)),
                                 out, z, alpha, sigma, k, c)
            if self.clip is not None:
                x0 = x0.clamp(*self.clip)
            x_coef, noise, std = (v[..., None, None] for v in table[j].unbind(-1))  # [G, S, 1, 1]
            z = torch.addcmul(noise * z, x_coef, x0)
            if noisy:  # only the samplers with eta > 0 draw noise
                z[:, noisy] = torch.addcmul(z[:, noisy], std[:, noisy], rng.randn(z[:, noisy].shape, z, generator))
            if record_every and ((j + 1) % record_every == 0 or j == T - 1):
                trace.append(z[:, :, :record_points].clone())
        return z, (torch.stack(trace) if record_every else None)


def _take(x, sl: slice):
    return x[sl] if isinstance(x, Tensor) and x.ndim else x


# ---------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------

SAMPLE_METRICS = ("energy", "sliced_w", "mode_error", "log_density", "memorisation", "low_density",
                  "mean_distance", "median_distance", "median_nn", "start_end_corr")


def median_nn_distance(samples: Tensor) -> Tensor:
    """The median over samples [*batch, N, 2] of each one's distance to its nearest other sample: [*batch]
    float64. Samples that collapse (onto one point, a few points, or the component means) crowd together and
    it falls far below that of as many data points (chapter 2, K6); it scales as N^(-1/2), so compare equal N."""
    flat = samples.reshape((-1,) + samples.shape[-2:]).double()
    out = torch.empty(len(flat), dtype=torch.float64)
    for i, x in enumerate(flat):  # one [N, N] distance matrix at a time
        d = torch.cdist(x, x)
        d.fill_diagonal_(math.inf)
        out[i] = d.min(-1).values.median()
    return out.reshape(samples.shape[:-2])


def median_mean_distance(mixture, samples: Tensor) -> Tensor:
    """The median over samples [*batch, N, 2] of the distance to the nearest component mean: [*batch] float64.
    Collapse onto the means shrinks it; unlike the mean distance, a few far-off samples do not hide that
    (chapter 2, K6; for an isotropic component of std s in 2D the data give s sqrt(2 ln 2))."""
    flat = samples.reshape(-1, samples.shape[-1]).double()
    dist = torch.cdist(flat, mixture.means.double()).min(-1).values
    return dist.reshape(samples.shape[:-1]).median(-1).values


def data_scale(x: Tensor) -> float:
    """The data's scale, sqrt(tr Cov(x)) of points [N, D]: the root-mean-square distance to their mean."""
    return float(torch.cov(x.double().T).trace().sqrt())


def scaled_recovery_error(reconstructed: Tensor, originals: Tensor, scale: float) -> Tensor:
    """Mean ||reconstructed - original|| over points, in units of `scale` (`data_scale`): [*batch] float64 for
    reconstructed [*batch, N, D] of originals [N, D] (chapter 2, K2: recovery judged on the data's scale)."""
    return (reconstructed.double() - originals.double()).pow(2).sum(-1).sqrt().mean(-1) / scale


def gaussian_fit_samples(train: Tensor, n: int, draws: int, seed: int = 0) -> Tensor:
    """`draws` independent sets of n points [draws, n, D] from the Gaussian with the training data's mean and
    covariance: the trivial model, measured like a trained one (one set per "seed")."""
    mean, cov = train.double().mean(0), torch.cov(train.double().T)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(draws, n, train.shape[-1], generator=g, dtype=torch.float64)
    return (mean + z @ torch.linalg.cholesky(cov).T).to(train.dtype)


def sample_metrics(mixture, samples: Tensor, starts: Tensor, train: Tensor, test: Tensor, *, n_eval: int = 1000,
                   projections: int = 200, seed: int = 0, quantile: float = 0.05) -> dict[str, Tensor]:
    """Every sample metric of chapter 2 for samples [*batch, N, 2] drawn from starts [*batch, N, 2]:
    a dict name -> [*batch] float64 (names in SAMPLE_METRICS; see `metrics`).

    The two-sample distances use the first n_eval samples against the first n_eval held-out points
    (bounded memory: the energy distance runs 8 samples at a time); 'low_density' is the share below
    the `quantile` of log p over the held-out points (the data give `quantile`)."""
    from diffusion_study.eval import metrics as m

    n_eval = min(positive_int("n_eval", n_eval), samples.shape[-2], len(test))
    sub, ref = samples[..., :n_eval, :], test[:n_eval]
    level = float(torch.quantile(mixture.log_prob(test.double()), quantile))
    return {
        "energy": m.energy_distance(sub, ref, chunk=8),
        "sliced_w": m.sliced_wasserstein(sub, ref, projections, seed),
        "mode_error": m.mode_weight_error(mixture, samples),
        "log_density": m.mean_log_density(mixture, samples),
        "memorisation": m.memorisation_share(samples, train, test, quantile),
        "low_density": m.low_density_share(mixture, samples, level),
        "mean_distance": m.nearest_mean_distance(mixture, samples),
        "median_distance": median_mean_distance(mixture, samples),
        "median_nn": median_nn_distance(sub),
        "start_end_corr": m.start_end_correlation(starts, samples),
    }


def summarise(spec: GridSpec, values: Tensor, samplers=None, level: float = 0.95) -> list[dict]:
    """Per-(configuration, sampler) mean and t-interval over seeds of per-member values [G, S]
    (S = len(samplers), default spec.samplers); cells that `sampler_applies` rejects are left out.
    Returns rows {process, schedule, target, sampler, mean, low, high, values}."""
    from diffusion_study.eval.metrics import t_interval

    samplers = list(spec.samplers if samplers is None else samplers)
    values = torch.as_tensor(values, dtype=torch.float64)
    assert values.shape == (len(spec.members), len(samplers)), f"values {tuple(values.shape)}"
    rows = []
    for config in spec.configs:
        per_seed = values[spec.member_index(config)]  # [seeds, S]
        for j, sampler in enumerate(samplers):
            if not sampler_applies(config.process, sampler):
                continue
            mean, low, high = t_interval(per_seed[:, j].numpy(), level)
            rows.append({"process": config.process, "schedule": config.schedule, "target": config.target,
                         "sampler": sampler, "mean": float(mean), "low": float(low), "high": float(high),
                         "values": per_seed[:, j].tolist()})
    return rows


def held_out_bound(grid: ToyGrid, test: Tensor, config: Config, batch_size: int = 500,
                   n_timesteps: int | None = None) -> Tensor:
    """The discrete negative ELBO (every step of the schedule) of held-out points [N, 2] under each
    seed of a stochastic-process configuration, in nats per point: [seeds] (chapter 2, coverage).

    The bound is a KL sum between Gaussians; for the deterministic processes every q(z_s | z_t, x)
    is a point mass and the bound is infinite, so they are refused. Uses `likelihood.bits_per_dim`
    with a Gaussian decoder on a sub-ensemble of the configuration's seeds (x0_hat clipped as in sampling);
    n_timesteps = M estimates the sum over the T - 1 KL terms from M random terms per point (unbiased).
    """
    from diffusion_study.core.denoiser import Denoiser
    from diffusion_study.core.likelihood import bits_per_dim
    from diffusion_study.core.objectives import GaussianDecoder

    if config.process != "stochastic":
        raise ValueError(f"the variational bound is infinite for the deterministic process {config.process!r}")
    members = grid.spec.member_index(config)
    model = Denoiser(sub_ensemble(grid.net, members), grid.processes[config.process, config.schedule],
                     config.target, clip=grid.clip)
    data = test.expand(members.stop - members.start, *test.shape)
    result = bits_per_dim(model, data, decoder=GaussianDecoder(), batch_size=batch_size, n_timesteps=n_timesteps,
                          generator=torch.Generator().manual_seed(0))
    return result.mean * test.shape[-1] * math.log(2)  # bits/dim -> nats per point


def grid_bounds(grid: ToyGrid, test: Tensor, n_timesteps: int | None = None) -> Tensor:
    """`held_out_bound` of every member of the grid: [G] float64 nats per point, NaN for the deterministic
    processes (their bound is infinite). The grid is moved to the CPU for it."""
    out = torch.full((grid.members,), math.nan, dtype=torch.float64)
    for config in grid.spec.configs:
        if config.process == "stochastic":
            out[grid.spec.member_index(config)] = held_out_bound(grid.cpu(), test, config, n_timesteps=n_timesteps)
    return out


@torch.no_grad()
def field_study(grid: ToyGrid, mixture, x: Tensor, steps, generator=None) -> dict[str, Tensor]:
    """What the stochastic-process networks learn (chapter 2, K4): at each step i in `steps`, points
    z = alpha_i x + sigma_i eps of held-out x [n, 2] (the member's schedule), each member's implied
    score -eps_hat / sigma, eps_hat and x0_hat against the exact ones of the noised mixture
    (`GaussianMixture.score`, `optimal_eps`, `posterior_mean`).

    Returns [G, K] float64 (NaN for deterministic-process members, whose inputs follow another law):
    score_rel / score_cos, eps_rel / eps_cos, x0_rel / x0_cos (`metrics.field_errors`), and
    x0_bayes_share = ||x0_hat - E[x0|z]||^2 / ||x0_hat - x0||^2: how much nearer the prediction is
    to the conditional mean (the score's information) than to the data point itself.
    """
    from diffusion_study.eval.metrics import field_errors

    G, K, n = grid.members, len(steps), len(x)
    steps = torch.as_tensor(steps, dtype=torch.long)
    eps = torch.randn((K, n, 2), generator=generator, dtype=torch.float64)
    index = steps[:, None].expand(K, n).reshape(-1)  # [K n]
    exact = {}
    for name, schedule in grid.schedules.items():
        a, s = (v.reshape(-1) for v in schedule.alpha_sigma(index).unbind(-1))
        z = a[:, None] * x.double().repeat(K, 1) + s[:, None] * eps.reshape(-1, 2)
        score = mixture.score(z, a, s)
        exact[name] = (z, score, -s[:, None] * score, mixture.posterior_mean(z, a, s), s)
    z = torch.stack([exact[c.schedule][0] for c, _ in grid.spec.members]).float()  # [G, K n, 2]
    device = grid.coef.device
    x0_hat, eps_hat = (v.cpu() for v in grid.implied(z.to(device), index.expand(G, -1).to(device)))
    out = {k: torch.full((G, K), math.nan, dtype=torch.float64)
           for k in ("score_rel", "score_cos", "eps_rel", "eps_cos", "x0_rel", "x0_cos", "x0_bayes_share")}
    for g, (config, _) in enumerate(grid.spec.members):
        if config.process != "stochastic":
            continue
        _, score, eps_star, x0_star, s = exact[config.schedule]
        pred = {"score": -eps_hat[g].double() / s[:, None], "eps": eps_hat[g].double(), "x0": x0_hat[g].double()}
        for key, ref in (("score", score), ("eps", eps_star), ("x0", x0_star)):
            rel, cos = field_errors(pred[key].reshape(K, n, 2), ref.reshape(K, n, 2))
            out[f"{key}_rel"][g], out[f"{key}_cos"][g] = rel, cos
        to_mean = (pred["x0"] - x0_star).pow(2).sum(-1).reshape(K, n).mean(-1)
        to_point = (pred["x0"] - x.double().repeat(K, 1)).pow(2).sum(-1).reshape(K, n).mean(-1)
        out["x0_bayes_share"][g] = to_mean / to_point
    return out


# ---------------------------------------------------------------------------------------
# Verdicts: effects with intervals against a threshold
# ---------------------------------------------------------------------------------------


def compare(a, b, threshold: float, level: float = 0.95) -> dict:
    """Is mean(a) - mean(b) larger than `threshold`? Welch's interval over seeds decides by
    eval.verdicts.decide: 'supported' if the whole interval lies above the threshold, 'contradicted'
    if it lies below, 'inconclusive' otherwise. Returns {diff, low, high, verdict, mde}, with mde the
    smallest |difference - threshold| that 80% of repetitions would decide (two samples of this size
    and their pooled sd, eval.verdicts.minimum_detectable_effect) and `estimate` (eval.verdicts.Estimate,
    for a family of comparisons decided together by eval.verdicts.decide_family)."""
    from diffusion_study.eval import verdicts
    from diffusion_study.eval.metrics import welch_interval

    diff, low, high = welch_interval(a, b, level)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)) if min(a.size, b.size) > 1 else math.nan
    mde = verdicts.minimum_detectable_effect(pooled, min(a.size, b.size), design="two-sample") \
        if math.isfinite(pooled) else math.inf
    return {"diff": diff, "low": low, "high": high, "verdict": verdicts.decide(low, high, threshold), "mde": mde,
            "estimate": verdicts.welch_estimate(a, b)}


def beats_trivial(log_energy: list[float], trivial_energy: float, log_ratio: float) -> bool:
    """A baseline works when its mean energy distance is at least the factor exp(log_ratio) below a trivial
    model's, `gaussian_fit_energy` (chapter 2, K1: a claim "X fails where Y works" needs a Y that works)."""
    return float(np.mean(log_energy)) <= math.log(trivial_energy) - log_ratio


def gaussian_fit_energy(train: Tensor, test: Tensor, n: int, seed: int = 0) -> float:
    """Energy distance to `n` held-out points of `n` draws from the Gaussian with the training data's mean and
    covariance: what a model that learned only the first two moments scores (the trivial baseline)."""
    mean, cov = train.double().mean(0), torch.cov(train.double().T)
    g = torch.Generator().manual_seed(seed)
    draws = mean + torch.randn(n, train.shape[-1], generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    from diffusion_study.eval.metrics import energy_distance

    return float(energy_distance(draws.to(test.dtype), test[:n]))


def ratio_parts(comps: dict[str, dict], quantity: str, sign: int = 1) -> list[dict]:
    """Ledger rows (eval.verdicts.part) for comparisons of log quantities: the effect as the ratio
    exp(sign * diff) with its interval, the minimum detectable effect as a factor too."""
    from diffusion_study.eval import verdicts

    rows = []
    for setting, c in comps.items():
        low, high = sorted((math.exp(sign * c["low"]), math.exp(sign * c["high"])))
        rows.append(verdicts.part(setting, c["verdict"], f"{quantity} ×{math.exp(sign * c['diff']):.3g}",
                                  interval=(low, high), mde=f"×{math.exp(c['mde']):.3g}" if math.isfinite(c["mde"]) else "—"))
    return rows


@torch.no_grad()
def exact_samples(mixture, schedule_name: str, T: int, starts: Tensor, etas, generator=None) -> Tensor:
    """Reference samples of the stochastic process with the exact denoiser E[x0 | z_t] of the mixture
    (`GaussianMixture.denoiser`) through `samplers.ddim_sample`, one run per eta: starts [S, N, 2] ->
    [S, N, 2]. What a perfectly trained network would give with the same sampler (chapter 2)."""
    from diffusion_study.core.samplers import ddim_sample

    process = GaussianForward(discrete_schedule(schedule_name, T))
    model = mixture.denoiser(process)
    return torch.stack([ddim_sample(model, z, process.schedule.grid(), eta=float(eta), generator=generator)
                        for z, eta in zip(starts, etas)])
