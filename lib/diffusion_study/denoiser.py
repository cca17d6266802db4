"""A network wrapped as a denoiser x0_hat(z_t, t): the one callable samplers and bounds use."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .predictions import PREDICTIONS, to_x0_eps
from .processes import GaussianForward
from .schedules import coefficient
from .validation import choose


class Denoiser(nn.Module):
    """x0_hat(z, t) from a network `net(z, time) -> [B, ...]` that predicts `prediction`.

    z: [B, ...] (or [G, B, ...] for an ensemble), t: the schedule's time index, shape z.shape[:-event].
    `clip` = (low, high) clamps x0_hat, e.g. (-1, 1) for images (chapter 3: without it the
    eps-parameterised mean explodes at the last cosine step, where alpha_T ~ 0).
    A `NeuralForward` process needs prediction 'x0': x0 cannot be read off z when F is not
    the identity.
    """

    def __init__(self, net: nn.Module, process, prediction: str = "eps", clip: tuple[float, float] | None = None):
        super().__init__()
        choose("prediction", prediction, PREDICTIONS)
        if not isinstance(process, GaussianForward) and prediction != "x0":
            raise ValueError(f"{type(process).__name__} needs prediction 'x0', got {prediction!r}")
        self.net, self.process, self.prediction, self.clip = net, process, prediction, clip

    def predict(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat), both shaped like z; x0_hat clipped when `clip` is set."""
        sched = self.process.schedule
        t = torch.as_tensor(t, device=z.device)
        out = self.net(z, sched.time(t).to(z.device))
        assert out.shape == z.shape, f"network output {tuple(out.shape)} != input {tuple(z.shape)}"
        alpha, sigma = coefficient(sched.alpha(t), z), coefficient(sched.sigma(t), z)
        x0, eps = to_x0_eps(self.prediction, out, z, alpha, sigma)
        if self.clip is not None:
            x0 = x0.clamp(*self.clip)
            eps = (z - alpha * x0) / sigma
        return x0, eps

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        return self.predict(z, t)[0]
