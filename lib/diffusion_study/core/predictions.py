"""What the network predicts, converted in one place (used by the loss, the samplers and the bounds).

For z = alpha x0 + sigma eps with alpha^2 + sigma^2 = 1 (chapter 1):
    eps   : the noise eps
    x0    : the clean data x0
    v     : v = alpha eps - sigma x0                      (Salimans & Ho 2022)
    score : grad_z log q(z | x0) = -eps / sigma           (its regression optimum is grad log q(z))
    prev  : z_s of the step t -> s: the posterior mean mu~ = k x0 + c z (the toy study's
            "single-step" network, which outputs x_{t-1}); k, c from `StepCoefficients`
            (x_coef and noise) of the step, with eta = 1.
Each is an affine function of (x0, eps) given z, so a prediction of one is a prediction of all.
`target` writes a training target; `to_x0` and `to_eps` read a network output. `step` is the
(x_coef, noise) pair of the step, needed by 'prev' alone; all scales broadcast on z.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffusion_study.base.args import choose

PREDICTIONS = ("eps", "x0", "v", "score", "prev")


def target(kind: str, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor, step=None) -> Tensor:
    """The regression target for prediction `kind`, given the true x0 and eps."""
    choose("prediction", kind, PREDICTIONS)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    if kind == "score":
        return -eps / sigma
    k, c = step
    return k * x0 + c * (alpha * x0 + sigma * eps)


def to_x0(kind: str, output: Tensor, z: Tensor, alpha: Tensor, sigma: Tensor, step=None) -> Tensor:
    """x0_hat from a network output of prediction `kind` (finite at sigma = 0 for 'x0' and 'prev')."""
    if kind == "eps":
        return torch.addcmul(z, sigma, output, value=-1) / alpha
    if kind == "x0":
        return output
    if kind == "v":
        return alpha * z - sigma * output
    if kind == "score":
        return (z + sigma**2 * output) / alpha
    if kind == "prev":
        k, c = step
        return (output - c * z) / k
    choose("prediction", kind, PREDICTIONS)  # raises: every valid kind returned above


def to_eps(kind: str, output: Tensor, z: Tensor, alpha: Tensor, sigma: Tensor, step=None) -> Tensor:
    """eps_hat from a network output of prediction `kind` (read directly where the output allows it)."""
    if kind == "eps":
        return output
    if kind == "v":
        return sigma * z + alpha * output
    if kind == "score":
        return -sigma * output
    return (z - alpha * to_x0(kind, output, z, alpha, sigma, step)) / sigma


def to_x0_eps(kind: str, output: Tensor, z: Tensor, alpha: Tensor, sigma: Tensor, step=None) -> tuple[Tensor, Tensor]:
    """(x0_hat, eps_hat): the inverse of `target`."""
    choose("prediction", kind, PREDICTIONS)
    return to_x0(kind, output, z, alpha, sigma, step), to_eps(kind, output, z, alpha, sigma, step)
