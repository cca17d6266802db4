"""2D toy data. Gaussian mixtures come with their exact noised density, score and denoiser.

If x ~ sum_k pi_k N(mu_k, S_k) and z = alpha x + sigma eps, then
    q(z) = sum_k pi_k N(alpha mu_k, C_k),  C_k = alpha^2 S_k + sigma^2 I,
    grad log q(z) = -sum_k r_k(z) C_k^{-1} (z - alpha mu_k),   r_k = responsibilities,
    E[x | z]      = sum_k r_k(z) (mu_k + alpha S_k C_k^{-1} (z - alpha mu_k)),
    E[eps | z]    = -sigma grad log q(z).
These are the oracles the samplers, the bound and the trained networks are checked against
(chapters 1 and 2). Images live in `diffusion_study.images`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .validation import choose, positive_int

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
        from .denoiser import Oracle

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

