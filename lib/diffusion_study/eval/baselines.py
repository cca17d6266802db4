"""Baselines a trained model must beat before its verdicts mean anything (issue 20's adequacy gates).

Discrete images (pixels as integer levels 0..L-1, [N, D] or [N, C, H, W]): bits/dim = -log2 P(x) / D of an exact
probability mass on the same L values the discretised decoder of the diffusion models bins onto
(`core.objectives.DiscretizedGaussianDecoder`, whose edge bins reach to +-inf, so its P is also a mass on the
L values). A model's bound in bits/dim and these numbers are in the same units; the bound is an upper bound of
the model's own -log2 P, these are the baselines' exact values.

- `histogram_bits`: every pixel independent, its L-value histogram over the training images (Laplace-smoothed).
- `CategoricalMixture`: K components, each a product of per-pixel categoricals, fitted by EM (MAP with a
  symmetric Dirichlet(1 + alpha) prior on every categorical, so no probability is 0); seeded, deterministic.

2D points ([N, 2]):
- `GaussianFit`: the Gaussian with the data's mean and covariance (moment matching): sample / log_prob.
- `checkerboard_mass`: the share of points on the occupied squares of `data.toy2d.checkerboard`'s board.
- `moons_mass`: the share of points within `width` of each of `data.toy2d.two_moons`' half circles.
- `sample_nll`: the mean negative log density of points under a density (the true one where it exists).

Only torch and the package's base layer are imported (eval's rule, tests/test_layers.py); the board and moon
geometry is restated here from data.toy2d, and tests check it against that module's samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from diffusion_study.base.args import positive_int

LN2 = math.log(2.0)


def _codes(k: Tensor, levels: int) -> Tensor:
    """Integer pixel values [N, *event] -> [N, D] int64, checked to lie in 0..levels-1."""
    k = torch.as_tensor(k)
    if k.is_floating_point():
        if not torch.equal(k, k.round()):
            raise ValueError("pixel values must be integer levels 0..levels-1 (use data.images.to_uint)")
        k = k.long()
    k = k.reshape(len(k), -1).long()
    if k.numel() and (k.min() < 0 or k.max() >= levels):
        raise ValueError(f"pixel values must lie in 0..{levels - 1}, got [{int(k.min())}, {int(k.max())}]")
    return k


# ---------------------------------------------------------------------------------------------
# Discrete images
# ---------------------------------------------------------------------------------------------


def histogram_log_probs(train: Tensor, levels: int, alpha: float = 1.0) -> Tensor:
    """log p_d(v) [D, levels] float64: each pixel's histogram over `train` [N, *event] (integer levels),
    (count + alpha) / (N + alpha * levels); alpha = 1 is Laplace's rule."""
    levels = positive_int("levels", levels)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    k = _codes(train, levels)
    counts = torch.zeros(k.shape[1], levels, dtype=torch.float64)
    counts.scatter_add_(1, k.T, torch.ones(k.T.shape, dtype=torch.float64))
    return ((counts + alpha) / (len(k) + alpha * levels)).log()


def histogram_bits(train: Tensor, test: Tensor, levels: int, alpha: float = 1.0) -> float:
    """Bits/dim of `test` under the per-pixel independent histogram of `train` (both integer levels
    0..levels-1, [N, *event] with the same event): mean over test images of -sum_d log2 p_d(x_d) / D."""
    logp = histogram_log_probs(train, levels, alpha)
    k = _codes(test, levels)
    if k.shape[1] != logp.shape[0]:
        raise ValueError(f"train and test images differ in size: {logp.shape[0]} and {k.shape[1]} pixels")
    per_image = logp.gather(1, k.T).sum(0)  # [M]
    return float(-per_image.mean() / (k.shape[1] * LN2))


@dataclass
class CategoricalMixture:
    """A mixture of K products of per-pixel categoricals on `levels` values, fitted by EM.

    log_weights [K], log_probs [K, D, levels] (float64); `history` holds the EM objective (the log-likelihood
    of the training images plus the log prior, per image, in nats) before the first and after every iteration:
    EM never lowers it."""

    levels: int
    log_weights: Tensor
    log_probs: Tensor
    history: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, train: Tensor, levels: int, components: int = 10, *, iterations: int = 100, alpha: float = 1.0,
            seed: int = 0, tol: float = 1e-7) -> CategoricalMixture:
        """EM on integer images `train` [N, *event]: responsibilities start from a Dirichlet(1) draw per image
        (torch.Generator seeded with `seed`: the fit is a function of the data and the seed); the M-step sets
        p_k,d(v) = (sum_n r_nk [x_nd = v] + alpha) / (sum_n r_nk + alpha * levels) (the MAP estimate under a
        Dirichlet(1 + alpha) prior) and the weights to the mean responsibilities. Stops after `iterations` or
        when the objective per image rises by less than `tol` nats."""
        levels, K = positive_int("levels", levels), positive_int("components", components)
        positive_int("iterations", iterations)
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        k = _codes(train, levels)
        N, D = k.shape
        g = torch.Generator().manual_seed(seed)
        resp = -torch.rand(N, K, generator=g, dtype=torch.float64).log()  # Dirichlet(1) rows after normalising
        resp = resp / resp.sum(1, keepdim=True)
        flat = (torch.arange(D) * levels + k).reshape(-1)  # [N * D] index of (d, x_nd) in a [D * levels] table
        model = cls(levels, torch.zeros(K, dtype=torch.float64), torch.zeros(K, D, levels, dtype=torch.float64))
        previous = -math.inf
        for it in range(iterations + 1):
            model._m_step(resp, flat, N, D, alpha)
            joint = model._joint(k)  # [N, K]
            objective = float(torch.logsumexp(joint, 1).mean() + alpha * model.log_probs.sum() / N)
            model.history.append(objective)
            if it == iterations or objective - previous < tol:
                break
            previous = objective
            resp = torch.softmax(joint, 1)
        return model

    def _m_step(self, resp: Tensor, flat: Tensor, N: int, D: int, alpha: float) -> None:
        K = resp.shape[1]
        counts = torch.zeros(K, D * self.levels, dtype=torch.float64)
        for c in range(K):
            counts[c].index_add_(0, flat, resp[:, c].repeat_interleave(D))
        counts = counts.reshape(K, D, self.levels)
        self.log_probs = ((counts + alpha) / (resp.sum(0)[:, None, None] + alpha * self.levels)).log()
        self.log_weights = (resp.sum(0) / N).log()

    def _joint(self, k: Tensor) -> Tensor:
        """log w_k + log p_k(x_n): [N, K]."""
        D, rows = k.shape[1], max(1, 2**24 // (len(self.log_weights) * k.shape[1]))  # chunks of ~16M entries
        pixel = torch.arange(D)[None, :]
        per = torch.cat([self.log_probs[:, pixel, c].sum(-1) for c in k.split(rows)], 1)  # [K, N]
        return (per + self.log_weights[:, None]).T

    def log_prob(self, x: Tensor) -> Tensor:
        """log P(x) in nats per image, x integer levels [N, *event]; [N] float64."""
        k = _codes(x, self.levels)
        if k.shape[1] != self.log_probs.shape[1]:
            raise ValueError(f"the mixture has {self.log_probs.shape[1]} pixels, the images {k.shape[1]}")
        return torch.logsumexp(self._joint(k), 1)

    def bits(self, x: Tensor) -> float:
        """Bits/dim of images x (integer levels): mean -log2 P(x) / D."""
        return float(-self.log_prob(x).mean() / (self.log_probs.shape[1] * LN2))


def mixture_bits(train: Tensor, test: Tensor, levels: int, components: int = 10, *, iterations: int = 100,
                 alpha: float = 1.0, seed: int = 0) -> float:
    """Bits/dim of `test` under `CategoricalMixture.fit(train, ...)` (integer levels, [N, *event])."""
    return CategoricalMixture.fit(train, levels, components, iterations=iterations, alpha=alpha, seed=seed).bits(test)


# ---------------------------------------------------------------------------------------------
# 2D points
# ---------------------------------------------------------------------------------------------


@dataclass
class GaussianFit:
    """The Gaussian with the mean [2] and covariance [2, 2] of the points it is fitted to (float64)."""

    mean: Tensor
    cov: Tensor

    @classmethod
    def fit(cls, x: Tensor) -> GaussianFit:
        """Moment matching on points x [N, d]: the sample mean and the (unbiased) sample covariance."""
        x = torch.as_tensor(x).double().reshape(len(x), -1)
        if len(x) < 2:
            raise ValueError("a Gaussian fit needs at least two points")
        return cls(x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1]))

    def _dist(self) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(self.mean, covariance_matrix=self.cov)

    def sample(self, n: int, generator=None) -> Tensor:
        """n points [n, d] float32, from `generator`'s stream."""
        n = positive_int("n", n)
        eps = torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)
        return (self.mean + eps @ torch.linalg.cholesky(self.cov).T).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """log density of points x [..., d], float64."""
        return self._dist().log_prob(torch.as_tensor(x).double())


def checkerboard_mass(x: Tensor, squares: int = 4, scale: float = 2.0) -> float | Tensor:
    """Share of the points x [*batch, N, 2] on the occupied squares of `data.toy2d.checkerboard`'s board
    (squares x squares on [-scale, scale]^2; square (i, j) with i + j even is occupied): 1 for the data,
    [*batch] (float for one set). Points off the board count as off the squares."""
    x = torch.as_tensor(x).double()
    width = 2 * scale / squares
    cell = torch.floor((x + scale) / width)
    on_board = ((cell >= 0) & (cell < squares)).all(-1)
    occupied = on_board & ((cell[..., 0] + cell[..., 1]) % 2 == 0)
    share = occupied.double().mean(-1)
    return float(share) if share.ndim == 0 else share


# two_moons before its final scaling by 1 / 0.75 and shift (-0.5, -0.25): half circles of radius 1 around
# (0, 0) (upper, angles 0..pi) and (1, 0.5) (lower, angles pi..2 pi), jittered with std `noise` = 0.1
_MOON_CENTRES = ((0.0, 0.0), (1.0, 0.5))
_MOON_SHIFT, _MOON_SCALE = (0.5, 0.25), 0.75


def moon_distances(x: Tensor) -> Tensor:
    """Distance of points x [..., 2] (two_moons' coordinates) from each half circle: [..., 2], in the
    moons' unscaled units (radius 1; two_moons' jitter has std 0.1 there)."""
    x = torch.as_tensor(x).double()
    p = x * _MOON_SCALE + torch.tensor(_MOON_SHIFT, dtype=torch.float64)
    out = []
    for m, centre in enumerate(_MOON_CENTRES):
        rel = p - torch.tensor(centre, dtype=torch.float64)
        side = rel[..., 1] >= 0 if m == 0 else rel[..., 1] <= 0  # the half plane the arc spans
        radial = (rel.norm(dim=-1) - 1).abs()
        ends = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
        to_end = (rel[..., None, :] - ends).norm(dim=-1).amin(-1)
        out.append(torch.where(side, radial, to_end))
    return torch.stack(out, -1)


def moons_mass(x: Tensor, width: float = 0.3) -> tuple[float | Tensor, float | Tensor]:
    """(share of the points x [*batch, N, 2] within `width` of the upper moon, of the lower moon), each
    [*batch] (float for one set); width in the moons' unscaled units (0.3 = three jitter std: the data put
    about 99.7% of their mass there, about half on each moon). A point near both counts for the nearer."""
    dist = moon_distances(x)
    near = dist.amin(-1) <= width
    upper = (near & (dist[..., 0] <= dist[..., 1])).double().mean(-1)
    lower = (near & (dist[..., 0] > dist[..., 1])).double().mean(-1)
    if upper.ndim == 0:
        return float(upper), float(lower)
    return upper, lower


def sample_nll(log_prob, x: Tensor) -> float | Tensor:
    """Mean negative log density -E log p(x) of points x [*batch, N, d] under `log_prob` (a callable on
    [..., d], e.g. the true density's); [*batch], float for one set."""
    v = -torch.as_tensor(log_prob(x)).double().mean(-1)
    return float(v) if v.ndim == 0 else v
