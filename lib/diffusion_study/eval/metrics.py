"""Sample-quality metrics for the 2D studies (chapters 2 and 3), and intervals over seeds.

Every sample metric takes samples x: [*batch, N, D] (e.g. [G, S, N, D]: members x samplers)
and returns a float for an unbatched x, else a tensor [*batch]:
- two-sample distances to a reference set y [M, D]: `energy_distance`, `sliced_wasserstein`;
- against the known mixture: `mode_fractions` / `mode_weight_error`, `mean_log_density`
  (precision), `low_density_share` (coverage of the tails), `nearest_mean_distance` (collapse);
- against the training set: `memorisation_share`, `recovery`;
- of a sampler's map: `start_end_correlation` (positional bias);
- of a learned field against an exact one: `field_errors` (relative error, cosine similarity).
`t_interval` and `welch_interval` summarise per-seed values with Student-t intervals.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from diffusion_study.base.args import positive_int, probability


def _out(value: Tensor) -> float | Tensor:
    return float(value) if value.ndim == 0 else value


def energy_distance(x: Tensor, y: Tensor, chunk: int | None = None) -> float | Tensor:
    """Szekely's energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic), x: [*batch, N, D], y: [M, D].

    Zero iff the two laws agree; about 1/N-sized for two samples of the same law. A float for
    x: [N, D], a tensor [*batch] for a batch of samples (e.g. one per ensemble member).
    `chunk` bounds memory: at most `chunk` samples of the flattened batch at once
    (the distance matrices take chunk * N * (N + M) doubles).
    """
    if chunk is not None and x.ndim > 2:
        flat = x.reshape((-1,) + x.shape[-2:])
        parts = [energy_distance(part, y) for part in flat.split(positive_int("chunk", chunk))]
        return torch.cat([p.reshape(-1) for p in parts]).reshape(x.shape[:-2])
    x, y = x.double(), y.double().expand(x.shape[:-2] + y.shape)
    xy = torch.cdist(x, y).mean((-2, -1))
    xx = torch.cdist(x, x).mean((-2, -1))
    yy = torch.cdist(y, y).mean((-2, -1))
    return _out(2 * xy - xx - yy)


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 200, seed: int = 0, p: int = 2) -> float | Tensor:
    """Sliced p-Wasserstein distance (POT's `ot.sliced_wasserstein_distance`, uniform weights),
    x: [*batch, N, D], y: [M, D]; [*batch].

    Every sample of the batch is compared on the same `n_projections` directions, POT's
    `get_random_projections(D, n_projections, seed)`, so differences between samples are not
    projection noise. With N = M the 1D optimal couplings are the sorted pairings and the whole
    batch is computed at once (equal to POT's value; a test checks it); otherwise POT runs per sample.
    """
    import ot

    n_projections = positive_int("n_projections", n_projections)
    theta = torch.from_numpy(ot.sliced.get_random_projections(x.shape[-1], n_projections, seed))  # [D, P]
    flat, ref = x.double().reshape((-1,) + x.shape[-2:]).cpu(), y.double().cpu()
    if flat.shape[1] == len(ref):
        px = (flat @ theta).sort(-2).values  # [batch, N, P]
        py = (ref @ theta).sort(-2).values  # [N, P]
        values = (px - py).abs().pow(p).mean(-2).mean(-1).pow(1 / p)
    else:
        values = torch.tensor([ot.sliced_wasserstein_distance(xs.numpy(), ref.numpy(), projections=theta.numpy(), p=p)
                               for xs in flat], dtype=torch.float64)
    return _out(values.reshape(x.shape[:-2]))


def mode_fractions(mixture, samples: Tensor) -> Tensor:
    """Fraction of `samples` [*batch, N, D] assigned to each component by maximum responsibility; [*batch, K]."""
    K, N = mixture.weights.numel(), samples.shape[-2]
    labels = mixture.responsibilities(samples.reshape(-1, samples.shape[-1])).argmax(-1)
    one_hot = torch.nn.functional.one_hot(labels, K).double().reshape(samples.shape[:-1] + (K,))
    return one_hot.sum(-2) / N


def mode_weight_error(mixture, samples: Tensor) -> float | Tensor:
    """Total-variation distance between the samples' mode fractions and the true weights,
    1/2 sum_k |f_k - pi_k| in [0, 1]; [*batch]."""
    return _out(0.5 * (mode_fractions(mixture, samples) - mixture.weights).abs().sum(-1))


def _log_density(mixture, samples: Tensor) -> Tensor:
    """log p(x) of the mixture at every sample: [*batch, N] float64 (non-finite samples: -inf)."""
    flat = samples.reshape(-1, samples.shape[-1]).double()
    finite = torch.isfinite(flat).all(-1)
    out = torch.full(flat.shape[:1], -math.inf, dtype=torch.float64)
    out[finite] = mixture.log_prob(flat[finite])
    return out.reshape(samples.shape[:-1])


def mean_log_density(mixture, samples: Tensor) -> float | Tensor:
    """Precision: the mean true log-density E_samples[log p(x)] of the samples under the mixture; [*batch].
    For the mixture's own samples it is minus its entropy; samples off the data score lower."""
    return _out(_log_density(mixture, samples).mean(-1))


def low_density_share(mixture, samples: Tensor, level: float) -> float | Tensor:
    """Share of samples where the true log-density is below `level`; [*batch]. With `level` the
    q-quantile of log p over held-out data, the mixture's own samples give q: less is poor
    coverage of the low-density regions, more is mass put where there are no data."""
    return _out((_log_density(mixture, samples) < level).double().mean(-1))


def nearest_mean_distance(mixture, samples: Tensor) -> float | Tensor:
    """Mean Euclidean distance of the samples to the nearest component mean; [*batch]. Near 0: the
    samples collapse onto the means (for isotropic std s in 2D the data give s sqrt(pi / 2))."""
    flat = samples.reshape(-1, samples.shape[-1]).double()
    dist = torch.cdist(flat, mixture.means.double()).min(-1).values
    return _out(dist.reshape(samples.shape[:-1]).mean(-1))


def nearest_neighbour(points: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    """Distance from every point [*batch, N, D] to its nearest neighbour in reference [M, D] and that
    neighbour's index: ([*batch, N] float64, [*batch, N] int64), by a k-d tree on the reference.
    Non-finite points get distance inf."""
    from scipy.spatial import cKDTree

    tree = cKDTree(reference.double().cpu().numpy())
    flat = points.reshape(-1, points.shape[-1]).double().cpu().numpy()
    finite = np.isfinite(flat).all(-1)
    dist, index = np.full(len(flat), np.inf), np.zeros(len(flat), dtype=np.int64)
    dist[finite], index[finite] = tree.query(flat[finite])
    shape = points.shape[:-1]
    return torch.from_numpy(dist).reshape(shape), torch.from_numpy(index).reshape(shape)


def memorisation_share(samples: Tensor, train: Tensor, held_out: Tensor, quantile: float = 0.05) -> float | Tensor:
    """Share of samples nearer to a training point than all but a `quantile` of the held-out points are:
    P(d(sample, train) < d_q), d_q the q-quantile of the held-out points' distances to their nearest
    training point; [*batch]. A model that generates fresh data gives about q; one that copies
    training points gives up to 1."""
    quantile = probability("quantile", quantile, open_left=True)
    d_q = torch.quantile(nearest_neighbour(held_out, train)[0], quantile)
    return _out((nearest_neighbour(samples, train)[0] < d_q).double().mean(-1))


def recovery(reconstructed: Tensor, originals: Tensor, train: Tensor) -> tuple[float | Tensor, float | Tensor]:
    """How exactly a process maps points back: reconstructed [*batch, N, D] of originals [N, D]
    (rows of `train` [M, D]). Returns (mean ||reconstructed - original||, share of reconstructions
    whose nearest training point is their own original), each [*batch]."""
    error = (reconstructed.double() - originals.double()).pow(2).sum(-1).sqrt().mean(-1)
    _, index = nearest_neighbour(reconstructed, train)
    own = nearest_neighbour(originals, train)[1]  # the originals' own rows in train
    return _out(error), _out((index == own).double().mean(-1))


def start_end_correlation(start: Tensor, end: Tensor) -> float | Tensor:
    """Positional bias of a sampler: Pearson correlation between each start point z_1 and its sample
    x_0, per coordinate, averaged over the D coordinates; start, end: [*batch, N, D] -> [*batch].
    Non-finite end points count as uncorrelated (0)."""
    s, e = start.double(), end.double()
    s, e = s - s.mean(-2, keepdim=True), e - e.mean(-2, keepdim=True)
    corr = (s * e).sum(-2) / (s.pow(2).sum(-2) * e.pow(2).sum(-2)).sqrt()
    return _out(torch.nan_to_num(corr, nan=0.0).mean(-1))


def field_errors(predicted: Tensor, exact: Tensor) -> tuple[float | Tensor, float | Tensor]:
    """How well a vector field (e.g. a learned score) matches an exact one at the same N points:
    relative squared error sum ||p - e||^2 / sum ||e||^2 and mean cosine similarity; each [*batch].
    predicted, exact: [*batch, N, D]."""
    p, e = predicted.double(), exact.double()
    rel = (p - e).pow(2).sum((-2, -1)) / e.pow(2).sum((-2, -1))
    cos = torch.nn.functional.cosine_similarity(p, e, dim=-1, eps=1e-12).mean(-1)
    return _out(rel), _out(cos)


def t_interval(values, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and Student-t confidence interval over the last axis (seeds): (mean, low, high), each [...].

    mean +- t_{(1 + level)/2, n-1} s / sqrt(n); for n = 1 the interval is (nan, nan).
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    n = v.shape[-1]
    mean = v.mean(-1)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * v.std(-1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) with Welch's t interval (unequal variances, Welch-Satterthwaite df):
    (difference, low, high). a: [n], b: [m] per-seed values of two independent configurations."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = a.mean() - b.mean(), math.sqrt(va + vb)
    if se == 0:
        return float(diff), float(diff), float(diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return float(diff), float(diff - half), float(diff + half)


def rank_correlation_interval(a, b, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rank correlation of paired values a, b [n] with a percentile bootstrap interval
    over the pairs (n_boot resamples from `seed`): (rho, low, high)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rho = stats.spearmanr(a, b).statistic
    draws = np.random.default_rng(seed).integers(0, len(a), (positive_int("n_boot", n_boot), len(a)))
    ranks_a, ranks_b = stats.rankdata(a[draws], axis=1), stats.rankdata(b[draws], axis=1)
    ra, rb = ranks_a - ranks_a.mean(1, keepdims=True), ranks_b - ranks_b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (ra * rb).sum(1) / np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    low, high = np.nanquantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return float(rho), float(low), float(high)
