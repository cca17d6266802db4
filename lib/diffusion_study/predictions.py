"""What the network predicts, converted in one place (used by losses and samplers alike).

For z = alpha x0 + sigma eps with alpha^2 + sigma^2 = 1 (chapter 1):
    eps   : the noise eps
    x0    : the clean data x0
    v     : v = alpha eps - sigma x0            (Salimans & Ho 2022)
    score : grad_z log q(z) = -E[eps | z] / sigma
Each is an invertible affine function of (x0, eps) given z, so a prediction of one is a
prediction of all. `to_x0_eps` reads a network output; `target` writes a training target.
"""

from __future__ import annotations

from torch import Tensor

from .validation import choose

PREDICTIONS = ("eps", "x0", "v", "score")


def target(kind: str, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The regression target for prediction `kind`, given the true x0 and eps; shapes broadcast."""
    choose("prediction", kind, PREDICTIONS)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    return -eps / sigma  # score of q(z_t | x0)


def to_x0_eps(kind: str, output: Tensor, z: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Invert `target`: (x0_hat, eps_hat) from a network output of prediction `kind`."""
    choose("prediction", kind, PREDICTIONS)
    if kind == "eps":
        return (z - sigma * output) / alpha, output
    if kind == "x0":
        return output, (z - alpha * output) / sigma
    if kind == "v":
        return alpha * z - sigma * output, sigma * z + alpha * output
    eps = -sigma * output
    return (z - sigma * eps) / alpha, eps
