"""Forward processes q(z_t | x) = N(alpha_t F(x, t), sigma_t^2 I) and their posteriors.

One interface, two members: `GaussianForward` (DDPM, F = identity) and `NeuralForward`
(Neural Diffusion Models, F = F_phi a learnable network with F(x, 0) = x). Everything else
(posterior, sampling, the bound) is written once, in `ForwardProcess`, in terms of F.
The DDPM posterior of chapter 1 is the F = identity case of the NDM posterior, and a test
checks that the two formulas agree.

Times `t` are whatever the schedule indexes by: integer steps for a `DiscreteSchedule`,
floats in [0, 1] for a `ContinuousSchedule`; shape [B] (or [G, B] for an ensemble).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .schedules import coefficient


class ForwardProcess(nn.Module):
    """q(z_t|x) = N(alpha_t F(x,t), sigma_t^2 I); subclasses define `transform` F(x, t)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def transform(self, x: Tensor, t: Tensor) -> Tensor:
        """F(x, t): [B, ...] -> [B, ...]. Must satisfy F(x, 0) = x."""
        raise NotImplementedError

    def transform_many(self, x: Tensor, times: list[Tensor]) -> list[Tensor]:
        """[F(x, t) for t in times] in a single call of F (the batch is stacked)."""
        n = x.shape[0]
        out = self.transform(torch.cat([x] * len(times)), torch.cat(list(times)))
        return list(out.split(n))

    def marginal(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean alpha_t F(x,t) [B, ...] and std sigma_t [B, 1, ...] of q(z_t | x)."""
        alpha = coefficient(self.schedule.alpha(t), x)
        sigma = coefficient(self.schedule.sigma(t), x)
        return alpha * self.transform(x, t), sigma

    def sample(self, x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """z_t = alpha_t F(x, t) + sigma_t eps, eps = `noise` ~ N(0, I); [B, ...]."""
        mean, std = self.marginal(x, t)
        return mean + std * noise

    def posterior(self, x: Tensor, z_t: Tensor, t: Tensor, s: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
        """q(z_s | z_t, x) for s < t, generalised by DDIM's eta; returns mean [B, ...], variance [B, 1, ...].

        With alpha_{t|s} = alpha_t / alpha_s, sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2 and
        s~^2 = sigma_{t|s}^2 sigma_s^2 / sigma_t^2 (the posterior variance beta~_t of DDPM):
            var  = eta^2 s~^2
            mean = alpha_s F(x, s) + sqrt(sigma_s^2 - var) (z_t - alpha_t F(x, t)) / sigma_t.
        eta = 1 is the exact posterior, which keeps the marginals q(z_s|x) (NDM's eq. for
        q_phi(z_s|z_t,x)); eta = 0 is DDIM's deterministic step. At s = 0 the mean is x.
        """
        sched = self.schedule
        a_t, s_t = sched.alpha(t), sched.sigma(t)
        a_s, s_s = sched.alpha(s), sched.sigma(s)
        # sigma_{t|s}^2 = 1 - alpha_t^2 / alpha_s^2 for variance-preserving schedules, by expm1.
        var_ts = -torch.expm1(2 * (a_t.log() - a_s.log()))
        post_var = var_ts * s_s**2 / s_t**2
        var = eta**2 * post_var
        noise_coef = (s_s**2 - var).clamp(min=0).sqrt() / s_t
        f_t, f_s = self.transform_many(x, [t, s])
        a_s_, a_t_, c_ = (coefficient(v, x) for v in (a_s, a_t, noise_coef))
        mean = a_s_ * f_s + c_ * (z_t - a_t_ * f_t)
        return mean, coefficient(var, x)


class GaussianForward(ForwardProcess):
    """DDPM's forward process: F(x, t) = x, so q(z_t|x) = N(alpha_t x, sigma_t^2 I)."""

    def transform(self, x: Tensor, t: Tensor) -> Tensor:
        return x

    def transform_many(self, x: Tensor, times: list[Tensor]) -> list[Tensor]:
        return [x] * len(times)


class NeuralForward(ForwardProcess):
    """NDM's forward process: F_phi(x, t) = x + t-weighted network output, so F_phi(x, 0) = x.

    `net(x, time) -> [B, ...]` is any network of the same signature as the denoisers;
    F(x, t) = x + tau(t) * net(x, tau(t)), tau = schedule.time(t) in [0, 1].
    """

    def __init__(self, schedule, net: nn.Module):
        super().__init__(schedule)
        self.net = net

    def transform(self, x: Tensor, t: Tensor) -> Tensor:
        tau = self.schedule.time(t).to(x.device)
        return x + coefficient(tau, x) * self.net(x, tau)
