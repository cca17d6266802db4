"""2D toy data. Gaussian mixtures come with their exact noised density, score and denoiser.

If x ~ sum_k pi_k N(mu_k, S_k) and z = alpha x + sigma eps, then
    q(z) = sum_k pi_k N(alpha mu_k, C_k),  C_k = alpha^2 S_k + sigma^2 I,
    grad log q(z) = -sum_k r_k(z) C_k^{-1} (z - alpha mu_k),   r_k = responsibilities,
    E[x | z]      = sum_k r_k(z) (mu_k + alpha S_k C_k^{-1} (z - alpha mu_k)),
    E[eps | z]    = -sigma grad log q(z).
These are the oracles the samplers, the bound and the trained networks are checked against
(chapters 1 and 2). Images live in `diffusion_study.data.images`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusion_study.base.args import choose, positive_int

TOY_DATASETS = ("two_gaussians", "checkerboard", "two_moons")


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k weights[k] N(means[k], covs[k]); weights [K], means [K, D], covs [K, D, D], float64."""

    weights: Tensor
    means: Tensor
    covs: Tensor

    def __post_init__(self):
        K, D = self.means.shape
        assert self.weights.shape == (K,) and self.covs.shape == (K, D, D), "inconsistent mixture shapes"
        assert torch.isclose(self.weights.sum(), torch.tensor(1.0, dtype=self.weights.dtype)), "weights must sum to 1"

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator=None) -> Tensor:
        """n draws, [n, D] float32; also usable via `sample_with_labels`."""
        return self.sample_with_labels(n, generator)[0]

    def sample_with_labels(self, n: int, generator=None) -> tuple[Tensor, Tensor]:
        """n draws [n, D] float32 and their component labels [n]."""
        n = positive_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)
        x = self.means[k] + (chol[k] @ eps.unsqueeze(-1)).squeeze(-1)
        return x.float(), k

    def noised(self, alpha, sigma) -> "GaussianMixture":
        """The law of alpha x + sigma eps (scalars): means alpha mu_k, covs alpha^2 S_k + sigma^2 I."""
        alpha, sigma = float(alpha), float(sigma)
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, alpha * self.means, alpha**2 * self.covs + sigma**2 * eye)

    # Per-point quantities for per-point noise levels: alpha, sigma of shape [N] or scalar.
    def _components(self, z: Tensor, alpha, sigma):
        z = z.double()
        alpha = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1, 1, 1, 1)  # [N|1, 1, 1, 1]
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1, 1)
        eye = torch.eye(self.dim, dtype=torch.float64)
        cov = alpha**2 * self.covs + sigma**2 * eye  # [N|1, K, D, D]
        diff = z[:, None, :] - alpha[..., 0] * self.means  # [N, K, D]
        chol = torch.linalg.cholesky(cov)
        sol = torch.cholesky_solve(diff.unsqueeze(-1), chol).squeeze(-1)  # C^{-1} (z - alpha mu): [N, K, D]
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [N|1, K]
        log_comp = -0.5 * ((diff * sol).sum(-1) + logdet + self.dim * math.log(2 * math.pi))
        log_joint = log_comp + self.weights.log()  # [N, K]
        return log_joint, sol, alpha[..., 0]

    def log_prob(self, z: Tensor, alpha=1.0, sigma=0.0) -> Tensor:
        """log q(z) of the noised mixture, [N] float64 (alpha=1, sigma=0 is the data density)."""
        log_joint, _, _ = self._components(z, alpha, sigma)
        return torch.logsumexp(log_joint, dim=-1)

    def responsibilities(self, z: Tensor, alpha=1.0, sigma=0.0) -> Tensor:
        """r_k(z) = P(component k | z) under the noised mixture, [N, K]."""
        log_joint, _, _ = self._components(z, alpha, sigma)
        return torch.softmax(log_joint, dim=-1)

    def score(self, z: Tensor, alpha=1.0, sigma=0.0) -> Tensor:
        """grad_z log q(z) = -sum_k r_k C_k^{-1}(z - alpha mu_k), [N, D] float64."""
        log_joint, sol, _ = self._components(z, alpha, sigma)
        r = torch.softmax(log_joint, dim=-1)
        return -(r.unsqueeze(-1) * sol).sum(1)

    def posterior_mean(self, z: Tensor, alpha, sigma) -> Tensor:
        """E[x | z] = sum_k r_k (mu_k + alpha S_k C_k^{-1}(z - alpha mu_k)), [N, D] float64."""
        log_joint, sol, alpha_ = self._components(z, alpha, sigma)
        r = torch.softmax(log_joint, dim=-1)
        comp = self.means + alpha_ * (self.covs @ sol.unsqueeze(-1)).squeeze(-1)  # [N, K, D]
        return (r.unsqueeze(-1) * comp).sum(1)

    def denoiser(self, process):
        """The Bayes-optimal x0_hat(z_t, t) = E[x_0 | z_t] for a Gaussian forward process, as an `Oracle`.

        z: [*batch, D]; t: 0-dim or of the batch shape; returns [*batch, D] in z's dtype.
        """
        from diffusion_study.core.denoiser import Oracle

        def x0_hat(z: Tensor, t: Tensor) -> Tensor:
            batch = z.shape[:-1]
            alpha = process.alpha(t).expand(batch).reshape(-1)
            sigma = process.sigma(t).expand(batch).reshape(-1)
            flat = self.posterior_mean(z.reshape(-1, self.dim), alpha.cpu(), sigma.cpu())
            return flat.reshape(z.shape).to(z)

        return Oracle(x0_hat, process)

    def mutual_information(self, alpha: float, sigma: float, n: int = 20_000, generator=None) -> tuple[float, float]:
        """I(x; z) for z = alpha x + sigma eps, in nats, by Monte Carlo with exact densities: (estimate, std error).

        I = E[log q(z | x) - log q(z)]: how much of the data survives at this noise level.
        """
        x = self.sample(n, generator).double()
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        z = alpha * x + sigma * eps
        log_cond = -0.5 * (eps**2).sum(1) - self.dim * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
        pointwise = log_cond - self.log_prob(z, alpha, sigma)
        return float(pointwise.mean()), float(pointwise.std() / math.sqrt(n))

    def optimal_eps(self, z: Tensor, alpha, sigma) -> Tensor:
        """E[eps | z] = -sigma grad log q(z), [N, D] float64."""
        sigma_ = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1)
        return -sigma_ * self.score(z, alpha, sigma)


def gaussian(mean, std: float) -> GaussianMixture:
    """N(mean, std^2 I) as a one-component mixture (its reverse process is exactly Gaussian)."""
    mean = torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1)
    covs = std**2 * torch.eye(mean.shape[1], dtype=torch.float64)[None]
    return GaussianMixture(torch.ones(1, dtype=torch.float64), mean, covs)


def two_gaussians(separation: float = 4.0, std: float = 0.5, weights=(0.5, 0.5)) -> GaussianMixture:
    """The toy study's mixture of two isotropic Gaussians at (+-separation/2, 0) in 2D."""
    w = torch.tensor(weights, dtype=torch.float64)
    means = torch.tensor([[-separation / 2, 0.0], [separation / 2, 0.0]], dtype=torch.float64)
    covs = std**2 * torch.eye(2, dtype=torch.float64).expand(2, 2, 2).clone()
    return GaussianMixture(w / w.sum(), means, covs)


def checkerboard(n: int, generator=None, squares: int = 4, scale: float = 2.0) -> Tensor:
    """n points uniform on the dark squares of a squares x squares board on [-scale, scale]^2; [n, 2]."""
    n = positive_int("n", n)
    width = 2 * scale / squares
    cell = torch.randint(0, squares, (n, 2), generator=generator)
    cell[:, 1] = (2 * torch.randint(0, squares // 2, (n,), generator=generator) + cell[:, 0] % 2) % squares
    offset = torch.rand(n, 2, generator=generator)
    return (-scale + (cell + offset) * width).float()


def two_moons(n: int, generator=None, noise: float = 0.1) -> Tensor:
    """n points on two interleaved half circles with Gaussian jitter, centred and scaled to unit-ish spread; [n, 2]."""
    n = positive_int("n", n)
    upper = torch.rand(n, generator=generator) < 0.5
    angle = math.pi * torch.rand(n, generator=generator)
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) + noise * torch.randn(n, 2, generator=generator)
    return (pts / 0.75).float()


def toy_dataset(name: str, n: int, generator=None) -> Tensor:
    """n points [n, 2] of a toy distribution by name: 'two_gaussians', 'checkerboard', 'two_moons'."""
    choose("dataset", name, TOY_DATASETS)
    if name == "two_gaussians":
        return two_gaussians().sample(n, generator)
    return {"checkerboard": checkerboard, "two_moons": two_moons}[name](n, generator)


def toy_split(name: str, n_train: int, n_test: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Independent train [n_train, 2] and test [n_test, 2] draws of a toy distribution, a function of `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return toy_dataset(name, n_train, generator), toy_dataset(name, n_test, generator)



# ---------------------------------------------------------------------------------------------
# Class-conditional quantities of a mixture (labels = components; chapter 3)
# ---------------------------------------------------------------------------------------------


def gaussian_ring(k: int = 3, radius: float = 1.5, std: float = 0.75) -> GaussianMixture:
    """k equal-weight isotropic Gaussians with means evenly spaced on a circle (the first at the top).

    Chapter 3's labelled mixture: overlapping classes (the default's Bayes error is about 10%), so
    guidance has precision to gain.
    """
    k = positive_int("k", k)
    angle = math.pi / 2 + 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    means = radius * torch.stack([angle.cos(), angle.sin()], 1)
    covs = std**2 * torch.eye(2, dtype=torch.float64).expand(k, 2, 2).clone()
    return GaussianMixture(torch.full((k,), 1.0 / k, dtype=torch.float64), means, covs)


def _shared_components(mixture: GaussianMixture, z: Tensor, alpha, sigma):
    """`GaussianMixture._components` for one noise level (scalar alpha, sigma): C_k is inverted once
    instead of factorised per point (the samplers' case: one time per step). Same outputs."""
    alpha, sigma = torch.as_tensor(alpha, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
    if alpha.numel() != 1:
        return mixture._components(z, alpha, sigma)
    z = z.double()
    cov = alpha**2 * mixture.covs + sigma**2 * torch.eye(mixture.dim, dtype=torch.float64)  # [K, D, D]
    precision, logdet = torch.linalg.inv(cov), torch.linalg.slogdet(cov)[1]  # [K, D, D], [K]
    diff = z[:, None, :] - alpha * mixture.means  # [N, K, D]
    sol = torch.einsum("kde,nke->nkd", precision, diff)  # C^{-1} (z - alpha mu): [N, K, D]
    log_comp = -0.5 * ((diff * sol).sum(-1) + logdet + mixture.dim * math.log(2 * math.pi))
    return log_comp + mixture.weights.log(), sol, alpha.reshape(1, 1, 1)


def class_score(mixture: GaussianMixture, z: Tensor, y: Tensor, alpha=1.0, sigma=0.0) -> Tensor:
    """grad_z log q_t(y | z) of the noised mixture (label y = component): [N, D] float64.

    = grad log N(z; alpha mu_y, C_y) - grad log q_t(z) = -C_y^{-1}(z - alpha mu_y) + sum_k r_k C_k^{-1}(z - alpha mu_k).
    """
    log_joint, sol, _ = _shared_components(mixture, z, alpha, sigma)
    r = torch.softmax(log_joint, dim=-1)  # [N, K]
    own = sol.gather(1, y.long().reshape(-1, 1, 1).expand(-1, 1, sol.shape[-1])).squeeze(1)  # [N, D]
    return -own + (r.unsqueeze(-1) * sol).sum(1)


def guided_score(mixture: GaussianMixture, z: Tensor, y: Tensor, gamma: float, alpha=1.0, sigma=0.0) -> Tensor:
    """The guided score with exact ingredients, grad log q_t(z) + gamma grad log q_t(y | z): [N, D] float64.

    At every t it is the score of q_t(z) q_t(y | z)^gamma (normalised), which is *not* the noised
    tilted density p(x) p(y | x)^gamma pushed through q(z_t | x) (`TiltedDensity`) unless gamma = 1.
    """
    return mixture.score(z, alpha, sigma) + gamma * class_score(mixture, z, y, alpha, sigma)


def conditional_posterior_mean(mixture: GaussianMixture, z: Tensor, y: Tensor, alpha, sigma) -> Tensor:
    """E[x | z, y]: component y's posterior mean mu_y + alpha S_y C_y^{-1}(z - alpha mu_y); y = K (null) gives
    the unconditional E[x | z]. z: [N, D], y: [N] -> [N, D] float64."""
    log_joint, sol, alpha_ = _shared_components(mixture, z, alpha, sigma)
    comp = mixture.means + alpha_ * (mixture.covs @ sol.unsqueeze(-1)).squeeze(-1)  # [N, K, D]
    K = mixture.means.shape[0]
    null = y.long() == K
    pick = comp.gather(1, y.long().clamp(max=K - 1).reshape(-1, 1, 1).expand(-1, 1, comp.shape[-1])).squeeze(1)
    mean = (torch.softmax(log_joint, -1).unsqueeze(-1) * comp).sum(1)
    return torch.where(null.unsqueeze(-1), mean, pick)


def conditional_denoiser(mixture: GaussianMixture, process):
    """The Bayes-optimal conditional x0_hat(z_t, t, y) = E[x_0 | z_t, y] as an Oracle with `null_label` K
    (y = K or y=None: unconditional), so `ClassifierFreeGuidance` can wrap it. z: [*batch, D]."""
    from diffusion_study.core.denoiser import Oracle

    K, D = mixture.means.shape

    class ConditionalOracle(Oracle):
        null_label = K
        event_dims = 1

        def batch_shape(self, z: Tensor) -> tuple[int, ...]:
            return tuple(z.shape[:-1])

        def forward(self, z: Tensor, t, y: Tensor | None = None) -> Tensor:
            batch = z.shape[:-1]
            y = torch.full(batch, K, dtype=torch.long) if y is None else y.expand(batch)
            alpha, sigma = process.alpha(t).cpu(), process.sigma(t).cpu()
            if alpha.ndim:  # per-example times; one time for the batch factorises C_k once
                alpha, sigma = alpha.expand(batch).reshape(-1), sigma.expand(batch).reshape(-1)
            flat = conditional_posterior_mean(mixture, z.reshape(-1, D).cpu(), y.reshape(-1).cpu(), alpha, sigma)
            return flat.reshape(z.shape).to(z)

    return ConditionalOracle(None, process)


class TiltedDensity:
    """p~(x) proportional to p(x) p(y | x)^gamma for a mixture, by quadrature on an n x n grid over [-lim, lim]^2.

    `log_density(x)` (normalised on the grid), `sample(n)` (a grid cell by its mass, then uniform in the
    cell), and `score(z, alpha, sigma)`: the score of p~ pushed through q(z_t | x) = N(alpha x, sigma^2 I),
    sum_j r_j (alpha x_j - z) / sigma^2 with r_j proportional to p~(x_j) N(z; alpha x_j, sigma^2 I).
    Accurate while sigma / alpha is several grid spacings (2 lim / n); at t = 0 the score is
    `guided_score`'s by definition, which is what makes the comparison at t > 0 informative (chapter 3).
    """

    def __init__(self, mixture: GaussianMixture, y: int, gamma: float, lim: float = 5.0, n: int = 300):
        self.mixture, self.y, self.gamma = mixture, int(y), float(gamma)
        self.h = 2 * lim / positive_int("n", n)
        axis = -lim + self.h * (torch.arange(n, dtype=torch.float64) + 0.5)
        self.points = torch.cartesian_prod(axis, axis)  # [n^2, 2] cell centres
        log_w = self._log_unnormalised(self.points)
        self.log_norm = torch.logsumexp(log_w, 0) + 2 * math.log(self.h)
        self.log_mass = log_w - torch.logsumexp(log_w, 0)  # [n^2], sums to one

    def _log_unnormalised(self, x: Tensor) -> Tensor:
        log_joint, _, _ = self.mixture._components(x, 1.0, 0.0)
        log_p = torch.logsumexp(log_joint, -1)
        return log_p + self.gamma * (log_joint[:, self.y] - log_p)

    def log_density(self, x: Tensor) -> Tensor:
        """log p~(x), [N] float64."""
        return self._log_unnormalised(x.double()) - self.log_norm

    def sample(self, n: int, generator=None) -> Tensor:
        """n draws [n, 2] float32."""
        cells = torch.multinomial(self.log_mass.exp(), positive_int("n", n), replacement=True, generator=generator)
        jitter = (torch.rand(n, 2, generator=generator, dtype=torch.float64) - 0.5) * self.h
        return (self.points[cells] + jitter).float()

    def score(self, z: Tensor, alpha: float, sigma: float, chunk: int = 64) -> Tensor:
        """grad log of p~ noised to alpha x + sigma eps at z: [N, 2] -> [N, 2] float64."""
        out = []
        for part in z.double().split(chunk):
            sq = torch.cdist(part, alpha * self.points) ** 2  # [c, n^2]
            r = torch.softmax(self.log_mass - sq / (2 * sigma**2), -1)
            out.append((alpha * r @ self.points - part) / sigma**2)
        return torch.cat(out)
