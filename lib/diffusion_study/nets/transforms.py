"""Networks for the learned transform F_phi(x, t) = x + t net(x, t) of Neural Diffusion Models (chapter 4),
built with the last layer at zero so that F = x at the start (an NDM starts as its DDPM), and the
EDM-preconditioned x0 network x_hat(z, t) used by chapter 4's 2D models.

Shapes: x: [*batch, *event] ([B, D], [G, B, D] for an ensemble of G, [B, C, H, W]); t of the batch shape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from diffusion_study.core.processes import NeuralForward
from diffusion_study.core.schedules import coefficient
from diffusion_study.nets.models import EnsembleMLP, TimeMLP, UNet


class SlowTime(nn.Module):
    """net(x, scale * t): the network's sinusoidal time features slowed down (chapter 4).

    `models.time_embedding` reads 1000 t, angular frequencies up to 1000 in t: right for a denoiser
    at DDPM's 1000 steps, wrong for F, whose time derivative enters NDM's bound (m'_t): with fast
    features the optimizer shapes dF/dt by tiny high-frequency wiggles and F itself hardly moves.
    scale = 0.01 keeps frequencies up to 10 (a period of 0.6 in t). event_dims and members pass through.
    """

    def __init__(self, net: nn.Module, scale: float = 0.01):
        super().__init__()
        self.net, self.scale = net, float(scale)
        self.event_dims = getattr(net, "event_dims", None)
        if getattr(net, "members", None) is not None:
            self.members = net.members

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(x, self.scale * t) if y is None else self.net(x, self.scale * t, y)


@torch.no_grad()
def zero_output_layer(net: nn.Module) -> nn.Module:
    """Set the last layer of a TimeMLP / EnsembleMLP / UNet (or one wrapped in SlowTime) to zero: F = x at init."""
    if isinstance(net, SlowTime):
        zero_output_layer(net.net)
    elif isinstance(net, EnsembleMLP):
        net.weights[-1].zero_(), net.biases[-1].zero_()
    elif isinstance(net, TimeMLP):
        net.layers[-1].weight.zero_(), net.layers[-1].bias.zero_()
    elif isinstance(net, UNet):
        net.out.weight.zero_(), net.out.bias.zero_()  # already zero by construction
    else:
        raise TypeError(f"no known output layer for {type(net).__name__}")
    return net


class ScalarGain(nn.Module):
    """net(x, t) = g(t) x with g a small MLP of t alone: F(x, t) = (1 + t g(t)) x, a learned rescaling of the
    data, i.e. a learned noise schedule and nothing more (the control of chapters 4 and 5 that isolates what a
    transform depending on x adds; issue 21, item 4a). The output layer starts at zero (F = x, as NDM's).

    x: [*batch, *event], t: [*batch] -> like x. `event_dims` says how many trailing dims of x form one example.
    """

    def __init__(self, event_dims: int, hidden: int = 32, depth: int = 2, time_dim: int = 16,
                 time_scale: float = 0.01):
        super().__init__()
        self.event_dims, self.time_scale = int(event_dims), float(time_scale)  # slowed time features, as SlowTime
        self.g = zero_output_layer(TimeMLP(1, hidden, depth, time_dim, activation="silu"))  # input: a constant 1

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        batch = x.shape[: x.ndim - self.event_dims]
        flat_t = t.expand(batch).reshape(-1)  # [B]
        ones = torch.ones(flat_t.shape[0], 1, dtype=x.dtype, device=x.device)
        gain = self.g(ones, self.time_scale * flat_t)  # [B, 1]
        return gain.reshape(*batch, *([1] * self.event_dims)) * x


class EnsembleScalarGain(nn.Module):
    """`ScalarGain` for an ensemble of G members: net(x, t) = g_m(t) x with g_m member m's MLP of t alone
    (an `EnsembleMLP` on a constant input), so F(x, t) = (1 + t g_m(t)) x: a learned schedule per member and
    nothing more (chapter 4's control, issue 21 item 4a). Output layer at zero (F = x at the start); time
    features slowed by `time_scale` as `SlowTime`.

    x: [G, B, D], t: [G, B] -> [G, B, D].
    """

    event_dims = 1

    def __init__(self, members: int, hidden: int = 32, depth: int = 2, time_dim: int = 16,
                 time_scale: float = 0.01, generator=None):
        super().__init__()
        self.members, self.time_scale = int(members), float(time_scale)
        self.g = zero_output_layer(EnsembleMLP(members, 1, hidden, depth, time_dim, "silu", generator=generator))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        ones = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)  # [G, B, 1]
        return self.g(ones, self.time_scale * t.expand(x.shape[:-1])) * x


class LearningRateScale(nn.Module):
    """net with its parameters stored divided by `scale` and multiplied back in the forward pass: under Adam
    (whose step is about lr whatever the gradient's size) this trains net's weights at `scale` times the
    optimizer's learning rate, leaving its function at the start unchanged (chapter 4's ablation: F's
    learning rate x10). event_dims and members pass through.
    """

    def __init__(self, net: nn.Module, scale: float):
        super().__init__()
        self.net, self.scale = net, float(scale)
        self.event_dims = getattr(net, "event_dims", None)
        if getattr(net, "members", None) is not None:
            self.members = net.members
        with torch.no_grad():
            for p in net.parameters():
                p.div_(self.scale)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        params = {name: p * self.scale for name, p in self.net.named_parameters()}
        args = (x, t) if y is None else (x, t, y)
        return torch.func.functional_call(self.net, params, args)


def mlp_forward(schedule, dim: int = 2, hidden: int = 64, depth: int = 3, time_dim: int = 32,
                members: int | None = None, activation: str = "silu", generator=None,
                time_scale: float | None = 0.01) -> NeuralForward:
    """NDM forward process with an MLP F (chapter 4): one TimeMLP, or an EnsembleMLP of `members`.

    F(x, t) = x + t net(x, t) starts at the identity (last layer zero): NDM starts as DDPM. The
    time features are slowed by `time_scale` (`SlowTime`; None keeps the denoisers' 1000 t).
    """
    if members is None:
        net = TimeMLP(dim, hidden, depth, time_dim, activation)
    else:
        net = EnsembleMLP(members, dim, hidden, depth, time_dim, activation, generator=generator)
    if time_scale is not None:
        net = SlowTime(net, time_scale)
    return NeuralForward(schedule, zero_output_layer(net))


def unet_forward(schedule, channels: int = 1, base: int = 32, mults: tuple[int, ...] = (1, 2),
                 attention: bool = False) -> NeuralForward:
    """NDM forward process with a U-Net F for images (chapter 5): F(x, t) = x + t UNet(x, t), F = x at the start."""
    return NeuralForward(schedule, UNet(channels, base, mults, attention))


class PreconditionedX0(nn.Module):
    """x_hat(z, t) = c_skip z + c_out net(c_in z, t): an x0-predicting network scaled as in EDM (Karras et al.
    2022), written for z = alpha x + sigma eps with data std `data_std`:

        c_skip = alpha s^2 / (alpha^2 s^2 + sigma^2),  c_out = sigma s / sqrt(alpha^2 s^2 + sigma^2),
        c_in = 1 / sqrt(alpha^2 s^2 + sigma^2).

    At low noise x_hat ~ z / alpha plus a small learned correction, at high noise ~ s net: the network's
    output stays of unit scale at every t. Any function of (z, t) is a valid x_hat, for DDPM and NDM alike
    (wrap it in `Denoiser(..., prediction='x0')`). `net` is a TimeMLP / EnsembleMLP (event_dims, members kept).
    """

    def __init__(self, net: nn.Module, schedule, data_std: float = 1.0):
        super().__init__()
        self.net, self.schedule, self.data_std = net, schedule, float(data_std)
        self.event_dims = getattr(net, "event_dims", None)
        if getattr(net, "members", None) is not None:
            self.members = net.members

    def forward(self, z: Tensor, time: Tensor, y: Tensor | None = None) -> Tensor:
        pair = self.schedule.alpha_sigma(time.double()).to(z)  # [*batch, 2]
        alpha, sigma = (coefficient(v, z) for v in pair.unbind(-1))
        s2 = self.data_std**2
        norm = (alpha**2 * s2 + sigma**2).rsqrt()
        out = self.net(z * norm, time) if y is None else self.net(z * norm, time, y)
        return alpha * s2 * norm**2 * z + sigma * self.data_std * norm * out


