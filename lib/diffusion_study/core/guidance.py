"""Guidance, written once as wrappers around a model, so every sampler gets it (chapter 3).

Convention (one place): the guidance scale w is the weight of the *difference*, w = 0 is
the plain conditional model:
    classifier-free:  eps~ = eps(z, y) + w (eps(z, y) - eps(z, null))        (Ho & Salimans 2022)
    classifier:       score~ = score(z) + w grad_z log p_phi(y | z_t, t)     (Dhariwal & Nichol 2021)
(Papers that write (1 + w) eps(z, y) - w eps(z, null) use the same w.) Every prediction is an
affine function of eps given z_t, so the classifier-free mix is the same in x0, eps or v;
the wrappers mix x0_hat. The classifier term in x0 is
    x0~ = x0_hat + w sigma_t^2 / alpha_t grad_z log p(y | z_t),   since x0 = (z + sigma^2 score) / alpha.
In scores both are grad log q_t(z) + gamma grad log q_t(y | z): gamma = 1 + w for classifier-free
guidance and gamma = w for classifier guidance (`tilt_exponent`), so classifier-free w matches
classifier guidance at 1 + w (chapter 3 compares them so).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from diffusion_study.core.predictions import to_eps
from diffusion_study.core.schedules import coefficient


def guidance_scale(value) -> float:
    """`value` as a float if it is a finite number >= 0 (the weight w of the difference), else ValueError."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"guidance scale must be a finite number >= 0, got {value!r}") from None
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"guidance scale must be a finite number >= 0, got {value!r}")
    return scale


def tilt_exponent(scale: float, kind: str = "classifier-free") -> float:
    """gamma with guided score = grad log q_t(z) + gamma grad log q_t(y | z): 1 + w for classifier-free
    guidance (it starts from the conditional score), w for classifier guidance (from the unconditional)."""
    w = guidance_scale(scale)
    return 1 + w if kind == "classifier-free" else w


class ClassifierFreeGuidance(nn.Module):
    """x0~(z, t, y) = x0(z, t, y) + w (x0(z, t, y) - x0(z, t, null)), both in one network call.

    `model` is a conditional `Denoiser` trained with label dropout (`simple_loss(..., p_uncond)`);
    its network's `null_label` is the unconditional input. Apply `clip` here, after the mix,
    rather than on the model (clipping each term first would change the mix).
    """

    def __init__(self, model: nn.Module, scale: float, clip: tuple[float, float] | None = None):
        super().__init__()
        if getattr(model, "null_label", None) is None:
            raise ValueError("classifier-free guidance needs a conditional model (a network with num_classes > 0)")
        self.model, self.scale, self.clip = model, guidance_scale(scale), clip
        self.process = model.process

    def forward(self, z: Tensor, t, y: Tensor) -> Tensor:
        if self.scale == 0:
            out = self.model(z, t, y)
        else:
            dim = len(self.model.batch_shape(z)) - 1  # stack conditional and unconditional on the last batch dim
            both = self.model(torch.cat([z, z], dim), t, torch.cat([y, torch.full_like(y, self.model.null_label)], dim))
            cond, uncond = both.chunk(2, dim)
            out = cond + self.scale * (cond - uncond)
        return out.clamp(*self.clip) if self.clip is not None else out


class ClassifierGuidance(nn.Module):
    """x0~(z, t, y) = x0(z, t) + w sigma_t^2 / alpha_t grad_z log p_phi(y | z, t).

    `classifier(z, time) -> logits [*batch, K]` is trained on noisy inputs z_t at network time
    `time` in [0, 1]. The gradient is taken with autograd enabled inside this call, so the
    wrapper works inside samplers that run without autograd.
    """

    def __init__(self, model: nn.Module, classifier: nn.Module, scale: float):
        super().__init__()
        self.model, self.classifier, self.scale = model, classifier, guidance_scale(scale)
        self.process = model.process

    def log_prob_grad(self, z: Tensor, t, y: Tensor) -> Tensor:
        """grad_z log p_phi(y | z_t), shaped like z."""
        batch = y.shape
        time = self.process.schedule.time(t).to(z.device).expand(batch)
        with torch.enable_grad():
            z_ = z.detach().requires_grad_(True)
            log_p = torch.log_softmax(self.classifier(z_, time), dim=-1)
            picked = log_p.gather(-1, y.unsqueeze(-1)).sum()
            (grad,) = torch.autograd.grad(picked, z_)
        return grad

    def forward(self, z: Tensor, t, y: Tensor) -> Tensor:
        x0 = self.model(z, t)
        if self.scale == 0:
            return x0
        alpha, sigma = coefficient(self.process.alpha(t), z), coefficient(self.process.sigma(t), z)
        return x0 + (self.scale * sigma**2 / alpha) * self.log_prob_grad(z, t, y)


@torch.no_grad()
def guidance_direction(model: nn.Module, z: Tensor, t, y: Tensor) -> Tensor:
    """The classifier-free difference as a score: (x0(z, t, y) - x0(z, t, null)) alpha_t / sigma_t^2
    = -(eps(z, y) - eps(z, null)) / sigma_t, shaped like z. For an exact model it is
    grad_z log q_t(y | z_t) (Bayes: log q_t(z | y) - log q_t(z) = log q_t(y | z) - log p(y)); chapter 3
    compares a trained model's with the exact one. `model` is a conditional `Denoiser` with a null label.
    """
    dim = len(model.batch_shape(z)) - 1
    both = model(torch.cat([z, z], dim), t, torch.cat([y, torch.full_like(y, model.null_label)], dim))
    cond, uncond = both.chunk(2, dim)
    alpha, sigma = (coefficient(v, z) for v in model.process.alpha_sigma(t).to(z).unbind(-1))
    return -(to_eps("x0", cond, z, alpha, sigma) - to_eps("x0", uncond, z, alpha, sigma)) / sigma
