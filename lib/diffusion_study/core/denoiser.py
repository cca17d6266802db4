"""The model: a network together with what it predicts, declared once (k-diffusion's `Denoiser`).

Every sampler, bound and loss calls a model `model(z, t, y=None) -> x0_hat` that carries its
forward process (`model.process`). `Denoiser` wraps a trained network; `Oracle` wraps an exact
function (e.g. `GaussianMixture.denoiser`). The prediction target lives on the `Denoiser`
alone: `objectives.simple_loss(denoiser, x)` trains for it and every sampler reads it, so a
network cannot be trained for one target and sampled as another (chapter 2 compares targets).
"""

from __future__ import annotations

from torch import Tensor, nn

from diffusion_study.base.args import choose
from diffusion_study.base.tensors import (
    ShapeError,
    check_network_input,
    check_tensor,
    check_times_shape,
    model_network,
)
from diffusion_study.core.predictions import PREDICTIONS, to_eps, to_x0
from diffusion_study.core.schedules import coefficient

_BOUND = "_diffusion_prediction"  # attribute a wrapped network keeps: the target it was declared for


class Denoiser(nn.Module):
    """x0_hat(z, t, y) from a network `net(z, time[, y]) -> like z` that predicts `prediction`.

    z: [*batch, *event] with event_dims = `net.event_dims` (default z.ndim - 1), so an
    `EnsembleMLP` takes [G, B, D]; t: 0-dim (one time for all) or of the batch shape; y:
    optional labels of the batch shape. `clip` = (low, high) clamps x0_hat (e.g. (-1, 1) for
    images: without it the eps-parameterised mean explodes where alpha_t ~ 0).
    Valid pairs: `NeuralForward` needs 'x0' (x0 cannot be read off z when F is not the
    identity); `NoiseFreeForward` needs 'x0' or 'prev' (there is no noise to predict);
    'prev' (z_{t - 1/T}) needs a discrete schedule, whose step 1/T it predicts.
    """

    def __init__(self, net: nn.Module, process, prediction: str = "eps", clip: tuple[float, float] | None = None):
        super().__init__()
        choose("prediction", prediction, PREDICTIONS)
        _check_pairing(process, prediction)
        declared = getattr(net, _BOUND, prediction)
        if declared != prediction:
            raise ValueError(f"this network was declared to predict {declared!r}; wrapping it as {prediction!r} "
                             "would read its outputs as the wrong quantity")
        object.__setattr__(net, _BOUND, prediction)
        self.net, self.process, self.prediction, self.clip = net, process, prediction, clip
        self.event_dims = getattr(net, "event_dims", None)
        self.members = getattr(net, "members", None)  # G of an ensemble: `train` draws [G, B] batches
        self.null_label = getattr(net, "null_label", None) if getattr(net, "num_classes", 0) else None
        self.step = 1.0 / process.schedule.T if prediction == "prev" else None

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}, clip={self.clip}"

    # The target travels with the weights: a checkpoint of one target does not load into another.
    def get_extra_state(self) -> dict:
        return {"prediction": self.prediction}

    def set_extra_state(self, state: dict) -> None:
        if state.get("prediction") != self.prediction:
            raise ValueError(f"checkpoint of a {state.get('prediction')!r}-predicting model cannot be loaded "
                             f"into a Denoiser that predicts {self.prediction!r}")

    def batch_shape(self, z: Tensor) -> tuple[int, ...]:
        """The leading (batch) dims of z: all but the network's event dims."""
        return tuple(z.shape[: z.ndim - (self.event_dims or z.ndim - 1)])

    def output(self, z: Tensor, t, y: Tensor | None = None) -> Tensor:
        """The raw network output at (z, t), shaped like z. z: [*batch, *event], floating; t: 0-dim or
        the batch shape (ShapeError / TypeError naming the argument otherwise)."""
        if not (isinstance(z, Tensor) and z.is_floating_point()):
            self.check_input(z, t)  # raises, naming the argument; the network checks z's shape and dtype
        try:
            time = self.process.schedule.time(t).to(z.device).expand(self.batch_shape(z))
        except RuntimeError:  # t does not fit z's batch shape, or z not the network's: say which
            self.check_input(z, t)
            raise
        out = self.net(z, time) if y is None else self.net(z, time, y)
        if out.shape != z.shape:
            raise ShapeError(f"Denoiser: the network's output {list(out.shape)} must have z's shape {list(z.shape)}")
        return out

    def check_input(self, z: Tensor, t=None, name: str = "z") -> None:
        """Named errors for an input z (a floating tensor of the network's shape and dtype) and times t (0-dim
        or z's batch shape): shapes and dtypes only, no device sync."""
        check_tensor(name, z, where="Denoiser: ")
        net = model_network(self.net)
        if net is not None:
            check_network_input(net, z, name=name, where=f"Denoiser({type(net).__name__}): ")
        check_times_shape("t", t, self.batch_shape(z), where="Denoiser: ")

    def scales(self, t, like: Tensor):
        """(alpha_t, sigma_t, step) cast to `like` for the conversions in `predictions`."""
        p = self.process
        pair = p.alpha_sigma(t).to(device=like.device, dtype=like.dtype)  # one lookup, one cast
        alpha, sigma = (coefficient(v, like) for v in pair.unbind(-1))
        step = None
        if self.prediction == "prev":
            c = p.step_coefficients(p.schedule.to_time(t) - self.step, t)
            step = (coefficient(c.x_coef, like), coefficient(c.noise, like))
        return alpha, sigma, step

    def forward(self, z: Tensor, t, y: Tensor | None = None) -> Tensor:
        """x0_hat(z, t), shaped like z (clipped when `clip` is set)."""
        x0 = to_x0(self.prediction, self.output(z, t, y), z, *self.scales(t, z))
        return x0.clamp(*self.clip) if self.clip is not None else x0

    def eps(self, z: Tensor, t, y: Tensor | None = None) -> Tensor:
        """eps_hat(z, t) = (z - alpha_t F(x0_hat, t)) / sigma_t, shaped like z (read directly when unclipped)."""
        if not (isinstance(z, Tensor) and z.is_floating_point()):
            self.check_input(z, t)
        try:
            alpha, sigma, step = self.scales(t, z)
        except RuntimeError:
            self.check_input(z, t)
            raise
        if self.clip is None and self.process.is_identity:
            return to_eps(self.prediction, self.output(z, t, y), z, alpha, sigma, step)
        return (z - alpha * self.process.transform(self(z, t, y), t)) / sigma


def _check_pairing(process, prediction: str) -> None:
    if not process.is_identity and prediction != "x0":
        raise ValueError(f"{type(process).__name__} needs prediction 'x0', got {prediction!r}")
    if getattr(process, "noise_free", False) and prediction not in ("x0", "prev"):
        raise ValueError(f"{type(process).__name__} has no noise: prediction must be 'x0' or 'prev', got {prediction!r}")
    if prediction == "prev" and process.schedule.T is None:
        raise ValueError("prediction 'prev' (z at the previous step) needs a discrete schedule")


class Oracle(nn.Module):
    """An exact denoiser given as a function `fn(z, t) -> x0_hat` for the forward process `process`."""

    def __init__(self, fn, process):
        super().__init__()
        self.fn, self.process = fn, process

    def forward(self, z: Tensor, t, y: Tensor | None = None) -> Tensor:
        return self.fn(z, t) if y is None else self.fn(z, t, y)
