"""Forward processes q(z_t | x) = N(alpha_t F(x, t), sigma_t^2 I) and their posteriors (chapter 1).

One interface, three members: `GaussianForward` (DDPM, F = identity), `NeuralForward`
(Neural Diffusion Models, F = F_phi a learnable network with F(x, 0) = x) and
`NoiseFreeForward` (the toy study's shrinking process z_t = alpha_t x, sigma = 0). The
posterior and sampling are written once, in `ForwardProcess`, in terms of F; the DDPM
posterior of chapter 1 is the F = identity case of the NDM posterior (a test checks it).

Times follow the schedule's convention: floats in [0, 1] (or integer steps of a discrete
schedule), of the batch shape of x ([B] or [G, B] for an ensemble) or 0-dim (one time for
the whole batch, as in a sampler step). x: [*batch, *event]; coefficients broadcast over the
event dims. A process is an `nn.Module`: `process.to(device)` moves its schedule tables.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from diffusion_study.core.schedules import Schedule, coefficient


class StepCoefficients(NamedTuple):
    """Constants of q(z_s | z_t, x) for times s < t, float64 (or cast with `to`), shape broadcast(s, t).

        mean = alpha_s F(x, s) + noise (z_t - alpha_t F(x, t)),   variance = var
    with sigma_{t|s}^2 = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2 (`transition_var`, DDPM's beta_t),
    s~^2 = sigma_{t|s}^2 sigma_s^2 / sigma_t^2 (`posterior_var`, DDPM's beta~_t), var = eta^2 s~^2,
    noise = sqrt(sigma_s^2 - var) / sigma_t. For F = identity the mean is x_coef x + noise z_t,
    x_coef = alpha_s - noise alpha_t.
    """

    alpha_s: Tensor
    alpha_t: Tensor
    sigma_t: Tensor
    noise: Tensor
    x_coef: Tensor
    var: Tensor
    posterior_var: Tensor
    transition_var: Tensor

    def table(self, like: Tensor) -> Tensor:
        """All constants of a grid of steps as one tensor [steps, 8] in `like`'s dtype and device (cast once)."""
        return torch.stack(torch.broadcast_tensors(*self), -1).to(device=like.device, dtype=like.dtype)

    @classmethod
    def row(cls, table: Tensor, i) -> "StepCoefficients":
        """The constants of step i from `table` (0-dim views: two tensor operations)."""
        return cls(*table[i].unbind())


class ForwardProcess(nn.Module):
    """q(z_t|x) = N(alpha_t F(x,t), sigma_t^2 I); subclasses define `transform` F(x, t).

    `is_identity` answers "is F(x, t) = x?" for the whole library (eps conversions, dF/dt = 0, the fused
    sampler step): True for DDPM's process and its subclasses, False for any learned or scaled F."""

    noise_free = False
    is_identity = False

    def __init__(self, schedule: Schedule):
        super().__init__()
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule (discrete_schedule or continuous_schedule), got {type(schedule).__name__}")
        self.schedule = schedule

    # Scales of the marginal ---------------------------------------------------------------
    def alpha(self, t) -> Tensor:
        """alpha_t, float64, shape of t."""
        return self.schedule.alpha(t)

    def sigma(self, t) -> Tensor:
        """sigma_t, float64, shape of t."""
        return self.schedule.sigma(t)

    def alpha_sigma(self, t) -> Tensor:
        """alpha_t and sigma_t stacked: [*t.shape, 2] float64, one lookup."""
        return self.schedule.alpha_sigma(t)

    # The transform F ------------------------------------------------------------------------
    def transform(self, x: Tensor, t) -> Tensor:
        """F(x, t): shaped like x. Must satisfy F(x, 0) = x."""
        raise NotImplementedError

    def transform_pairs(self, pairs: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        """[F(x, t) for (x, t) in pairs] in a single call of F (the pairs are stacked on the batch)."""
        return [self.transform(x, t) for x, t in pairs]

    # Marginal and posterior ------------------------------------------------------------------
    def marginal(self, x: Tensor, t) -> tuple[Tensor, Tensor]:
        """Mean alpha_t F(x,t) (shaped like x) and std sigma_t (broadcastable) of q(z_t | x)."""
        return coefficient(self.alpha(t), x) * self.transform(x, t), coefficient(self.sigma(t), x)

    def sample(self, x: Tensor, t, noise: Tensor) -> Tensor:
        """z_t = alpha_t F(x, t) + sigma_t eps, eps = `noise` ~ N(0, I); shaped like x."""
        mean, std = self.marginal(x, t)
        return mean + std * noise

    def step_coefficients(self, s, t, eta: float = 1.0) -> StepCoefficients:
        """The constants of q(z_s | z_t, x) for s < t (any broadcastable shapes), float64."""
        a_t, s_t, a_s, s_s = self.alpha(t), self.sigma(t), self.alpha(s), self.sigma(s)
        # sigma_{t|s}^2 = 1 - alpha_t^2 / alpha_s^2 for a variance-preserving schedule, by expm1.
        transition_var = -torch.expm1(2 * (a_t.log() - a_s.log()))
        posterior_var = transition_var * s_s**2 / s_t**2
        var = eta**2 * posterior_var
        noise = (s_s**2 - var).clamp(min=0).sqrt() / s_t
        return StepCoefficients(a_s, a_t, s_t, noise, a_s - noise * a_t, var, posterior_var, transition_var)

    def posterior_mean(self, c: StepCoefficients, x: Tensor, z_t: Tensor, s, t) -> Tensor:
        """alpha_s F(x, s) + noise (z_t - alpha_t F(x, t)) with precomputed constants `c`; shaped like z_t."""
        f_s, f_t = self.transform_pairs([(x, s), (x, t)])
        return self.mean_from_transforms(c, f_s, f_t, z_t)

    @staticmethod
    def mean_from_transforms(c: StepCoefficients, f_s: Tensor, f_t: Tensor, z_t: Tensor) -> Tensor:
        """alpha_s F_s + noise (z_t - alpha_t F_t) from given F(x, s), F(x, t)."""
        a_s, a_t, k = (coefficient(v, z_t) for v in (c.alpha_s, c.alpha_t, c.noise))
        return a_s * f_s + k * (z_t - a_t * f_t)

    def posterior(self, x: Tensor, z_t: Tensor, t, s, eta: float = 1.0) -> tuple[Tensor, Tensor]:
        """q(z_s | z_t, x) for s < t, generalised by DDIM's eta: mean (like x), variance (broadcastable).

        eta = 1 is the exact posterior, which keeps the marginals q(z_s|x) (NDM's
        q_phi(z_s|z_t,x)); eta = 0 is DDIM's deterministic step. At s = 0 the mean is x.
        """
        c = self.step_coefficients(s, t, eta)
        return self.posterior_mean(c, x, z_t, s, t), coefficient(c.var, x)


class GaussianForward(ForwardProcess):
    """DDPM's forward process: F(x, t) = x, so q(z_t|x) = N(alpha_t x, sigma_t^2 I)."""

    is_identity = True

    def transform(self, x: Tensor, t) -> Tensor:
        return x

    def transform_pairs(self, pairs: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        return [x for x, _ in pairs]

    def posterior_mean(self, c: StepCoefficients, x: Tensor, z_t: Tensor, s, t) -> Tensor:
        """x_coef x + noise z_t: two fused operations per step."""
        return torch.addcmul(coefficient(c.noise, z_t) * z_t, coefficient(c.x_coef, z_t), x)


class NoiseFreeForward(GaussianForward):
    """The toy study's noise-free shrinking process z_t = alpha_t x (sigma = 0; Klepper's
    'deterministic diffusion' (a)). Its posterior is the point mass at alpha_s x; the
    variational bound is infinite for it (a KL between point masses), so bounds refuse it."""

    noise_free = True

    def sigma(self, t) -> Tensor:
        return torch.zeros_like(self.schedule.sigma(t))

    def alpha_sigma(self, t) -> Tensor:
        return self.schedule.alpha_sigma(t) * torch.tensor([1.0, 0.0], dtype=torch.float64)

    def step_coefficients(self, s, t, eta: float = 1.0) -> StepCoefficients:
        a_s, a_t = self.alpha(s), self.alpha(t)
        zero = torch.zeros_like(a_s * a_t)
        return StepCoefficients(a_s + zero, a_t + zero, zero, zero, a_s + zero, zero, zero, zero)


class NeuralForward(ForwardProcess):
    """NDM's forward process: F_phi(x, t) = x + t * net(x, t), so F_phi(x, 0) = x by construction.

    `net(x, time) -> like x` is any network of the denoisers' signature (its `event_dims`
    attribute, default x.ndim - 1, says which trailing dims form one example).
    """

    def __init__(self, schedule: Schedule, net: nn.Module):
        super().__init__(schedule)
        self.net = net

    def _batch_dims(self, x: Tensor) -> int:
        return x.ndim - getattr(self.net, "event_dims", x.ndim - 1)

    def transform(self, x: Tensor, t) -> Tensor:
        batch = x.shape[: self._batch_dims(x)]
        tau = self.schedule.time(t).to(x.device).expand(batch)
        return x + coefficient(tau, x) * self.net(x, tau)

    def transform_pairs(self, pairs: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        """One call of F_phi for all (x, t) pairs, stacked on the last batch dim."""
        x0 = pairs[0][0]
        dim = self._batch_dims(x0) - 1
        batch = x0.shape[: dim + 1]
        xs = torch.cat([x for x, _ in pairs], dim=dim)
        ts = torch.cat([self.schedule.to_time(t).to(x0.device).expand(batch) for _, t in pairs], dim=dim)
        return list(self.transform(xs, ts).split(x0.shape[dim], dim=dim))
