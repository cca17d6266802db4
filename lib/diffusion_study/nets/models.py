"""Networks for the study: a time-conditioned MLP, a batched ensemble of them, a small U-Net.

Every network is called as `net(z, t, y=None)` with continuous time `t` in [0, 1] (the batch
shape of `z`) and returns a tensor of the same shape as `z`; what that output means (eps, x0,
v, score, ...) is decided by the loss and the sampler, not here. `net.event_dims` trailing dims
of `z` form one example, the rest are batch dims ([B], or [G, B] for an ensemble).

With `num_classes` K > 0 a net is class-conditional: `y` holds labels in 0..K with the batch
shape of `z`, and label K = `net.null_label` means "no label" (trained by label dropout, used by
classifier-free guidance); y=None is the null label for every example. A net built with K = 0
is unconditional and refuses a `y`. Used by the toy study (TimeMLP, EnsembleMLP) and the image
chapters (UNet).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusion_study.base.args import choose, positive_int
from diffusion_study.base.tensors import ShapeError, check_labels, check_network_input

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of continuous time (Transformer / DDPM style).

    t: [B] in [0, 1] -> [B, dim]. Time is scaled by 1000 so that the frequencies, which
    range geometrically from 1 to 1/10000, resolve the same range as DDPM's integer steps.
    """
    dim = positive_int("dim", dim)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    if t.ndim != 1:
        raise ShapeError(f"time_embedding: t must have shape [B], got {list(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None, :]  # [B, half]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # [B, dim]


def _num_classes(value) -> int:
    """`value` as an int >= 0 (0: an unconditional net), else ValueError."""
    if isinstance(value, bool) or int(value) != value or int(value) < 0:
        raise ValueError(f"num_classes must be a non-negative integer (0: unconditional), "
                         f"got {value!r}")
    return int(value)


def _check_labels(net: nn.Module, y: Tensor | None, batch_shape: tuple[int, ...]) -> None:
    """Host-side checks of labels y (shape, dtype; values are not read, so no device sync)."""
    if y is None:
        return
    if not net.num_classes:
        raise ValueError(f"{type(net).__name__} is unconditional (num_classes=0); "
                         "call it without y")
    check_labels("y", y, batch_shape, where=f"{type(net).__name__}: ")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- MLPs


def _widths(dim: int, hidden: int, depth: int, time_dim: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each linear layer: `depth` hidden layers, then a linear output."""
    sizes = [dim + time_dim] + [hidden] * depth + [dim]
    return list(zip(sizes[:-1], sizes[1:]))


class TimeMLP(nn.Module):
    """MLP on concat(z, time features): `depth` hidden layers, linear output.

    forward(z: [B, D], t: [B], y: [B] | None) -> [B, D]. The time features are
    time_embedding(t), plus a learned label embedding [K + 1, time_dim] of y when num_classes
    K > 0. The toy study's network (Klepper) is TimeMLP(2, hidden=20, depth=2, activation="relu").
    """

    event_dims = 1

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, time_dim: int = 32,
                 activation: str = "relu", num_classes: int = 0):
        super().__init__()
        self.dim, self.hidden = positive_int("dim", dim), positive_int("hidden", hidden)
        self.depth, self.time_dim = positive_int("depth", depth), positive_int("time_dim", time_dim)
        self.activation = choose("activation", activation, ACTIVATIONS)
        self.num_classes = self.null_label = _num_classes(num_classes)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in _widths(dim, hidden, depth, time_dim))
        self.act = ACTIVATIONS[activation]()
        if self.num_classes:  # created last: the other parameters match the unconditional net's
            self.label_embedding = nn.Embedding(self.num_classes + 1, time_dim)

    def forward(self, z: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if not (isinstance(z, Tensor) and isinstance(t, Tensor) and z.ndim == 2 and z.shape[1] == self.dim
                and t.shape == z.shape[:1] and z.dtype == self.layers[0].weight.dtype):
            check_network_input(self, z, t)  # raises, naming the argument and what it must be
        B = z.shape[0]
        _check_labels(self, y, (B,))
        emb = time_embedding(t, self.time_dim).to(z.dtype)  # [B, time_dim]
        if self.num_classes:
            table = self.label_embedding.weight  # [K + 1, time_dim]
            emb = emb + (table[self.null_label] if y is None else table[y])
        h = torch.cat([z, emb], dim=1)  # [B, D + time_dim]
        for layer in self.layers[:-1]:
            h = self.act(layer(h))  # [B, hidden]
        return self.layers[-1](h)  # [B, D]


class EnsembleMLP(nn.Module):
    """G independent TimeMLPs evaluated as one batched tensor program (no loop over G).

    Layer k keeps weights[k]: [G, fan_in, fan_out] and biases[k]: [G, 1, fan_out]; each layer
    is one torch.baddbmm. forward(z: [G, B, D], t: [G, B], y: [G, B] | None) -> [G, B, D]; the
    batch dims are [G, B]. With num_classes K > 0 each member has its own label embedding,
    label_embedding: [G, K + 1, time_dim]. Members share no parameters, so the gradient of a
    loss on member g reaches only member g, and one Adam over the stacked tensors is G
    independent Adams (Adam is elementwise).
    """

    event_dims = 1

    def __init__(self, G: int, dim: int, hidden: int = 128, depth: int = 3, time_dim: int = 32,
                 activation: str = "relu", generator: torch.Generator | None = None,
                 num_classes: int = 0):
        super().__init__()
        self.members = positive_int("G", G)  # train() draws [G, B] batches for models with `members`
        self.dim, self.hidden = positive_int("dim", dim), positive_int("hidden", hidden)
        self.depth, self.time_dim = positive_int("depth", depth), positive_int("time_dim", time_dim)
        self.activation = choose("activation", activation, ACTIVATIONS)
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in _widths(dim, hidden, depth, time_dim):
            # nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(G, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(G, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.act = ACTIVATIONS[activation]()
        self.num_classes = self.null_label = _num_classes(num_classes)
        if self.num_classes:  # drawn last: the weights match the unconditional ensemble's
            # nn.Embedding's default init: N(0, 1).
            table = torch.randn(G, self.num_classes + 1, time_dim, generator=generator)
            self.label_embedding = nn.Parameter(table)  # [G, K + 1, time_dim]

    def forward(self, z: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if not (isinstance(z, Tensor) and isinstance(t, Tensor) and z.ndim == 3 and z.shape[0] == self.members
                and z.shape[2] == self.dim and t.shape == z.shape[:2] and z.dtype == self.weights[0].dtype):
            check_network_input(self, z, t)  # raises, naming the argument and what it must be
        G, B, _ = z.shape
        _check_labels(self, y, (G, B))
        emb = time_embedding(t.reshape(G * B), self.time_dim).to(z.dtype).reshape(G, B, -1)
        if self.num_classes:
            table = self.label_embedding  # [G, K + 1, time_dim]
            if y is None:
                emb = emb + table[:, self.null_label, None, :]  # [G, 1, time_dim]
            else:
                index = y.long()[:, :, None].expand(G, B, self.time_dim)
                emb = emb + torch.gather(table, 1, index)  # [G, B, time_dim]
        h = torch.cat([z, emb], dim=2)  # [G, B, D + time_dim]
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # [G, B, fan_out]
            if k < last:
                h = self.act(h)
        return h  # [G, B, D]

    @torch.no_grad()
    def member(self, g: int) -> TimeMLP:
        """A standalone TimeMLP carrying copies of member g's weights (same outputs)."""
        if not 0 <= g < self.members:
            raise ValueError(f"member index must lie in [0, {self.members}), got {g}")
        net = TimeMLP(self.dim, self.hidden, self.depth, self.time_dim, self.activation,
                      num_classes=self.num_classes)
        net.to(self.weights[0].device, self.weights[0].dtype)
        for layer, w, b in zip(net.layers, self.weights, self.biases):
            layer.weight.copy_(w[g].T)  # nn.Linear keeps [fan_out, fan_in]
            layer.bias.copy_(b[g, 0])
        if self.num_classes:
            net.label_embedding.weight.copy_(self.label_embedding[g])
        return net


# --------------------------------------------------------------------------- U-Net


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, ch), ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, time added per channel in between, residual skip."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, c_out, H, W]
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm, self.qkv, self.out = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(2, 3).unbind(1)  # [B, HW, C]
        h = F.scaled_dot_product_attention(q, k, v)  # [B, HW, C]
        return x + self.out(h.transpose(1, 2).reshape(B, C, H, W))


class UNet(nn.Module):
    """A small U-Net eps/x0/v-model for 8x8 to 32x32 images.

    forward(z: [B, C, H, W], t: [B], y: [B] | None) -> [B, C, H, W]. With num_classes K > 0 a
    label embedding [K + 1, t_dim] is added to the time MLP's output. One ResBlock per level on
    the way down and up, a stride-2 conv between levels (len(mults) - 1 of them), nearest
    upsampling back to the skip's exact size, so odd sizes work (28 -> 14 -> 7 -> 4 with
    mults=(1, 2, 2, 2)).
    `attention` adds self-attention at the lowest resolution. The output conv starts at zero,
    so the untrained model predicts 0 (the mean of eps).
    """

    event_dims = 3

    def __init__(self, channels: int = 1, base: int = 32, mults: tuple[int, ...] = (1, 2),
                 attention: bool = False, time_dim: int | None = None, num_classes: int = 0):
        super().__init__()
        self.num_classes = self.null_label = _num_classes(num_classes)
        self.channels = positive_int("channels", channels)
        positive_int("base", base)
        if not mults:
            raise ValueError("mults must name at least one level")
        widths = [base * positive_int("mults entry", m) for m in mults]
        self.base, t_dim = base, time_dim or 4 * base
        self.time = nn.Sequential(nn.Linear(base, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.inp = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        prev = widths[0]
        for i, w in enumerate(widths):
            self.down.append(ResBlock(prev, w, t_dim))
            if i < len(widths) - 1:
                self.pool.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            prev = w
        self.mid = nn.ModuleList([ResBlock(prev, prev, t_dim),
                                  Attention(prev) if attention else nn.Identity(),
                                  ResBlock(prev, prev, t_dim)])
        self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(ResBlock(prev + w, w, t_dim))
            if i > 0:
                self.unpool.append(nn.Conv2d(w, widths[i - 1], 3, padding=1))
                w = widths[i - 1]
            prev = w
        self.out_norm, self.out = _norm(prev), nn.Conv2d(prev, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if self.num_classes:  # created last: the other parameters match the unconditional net's
            self.label_embedding = nn.Embedding(self.num_classes + 1, t_dim)

    def forward(self, z: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if not (isinstance(z, Tensor) and isinstance(t, Tensor) and z.ndim == 4 and z.shape[1] == self.channels
                and t.shape == z.shape[:1] and z.dtype == self.inp.weight.dtype):
            check_network_input(self, z, t)  # raises, naming the argument and what it must be
        B = z.shape[0]
        _check_labels(self, y, (B,))
        temb = self.time(time_embedding(t, self.base).to(z.dtype))  # [B, t_dim]
        if self.num_classes:
            table = self.label_embedding.weight  # [K + 1, t_dim]
            temb = temb + (table[self.null_label] if y is None else table[y])
        h, skips = self.inp(z), []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)  # [B, w, ceil(H/2), ceil(W/2)]
        h = self.mid[0](h, temb)
        h = self.mid[1](h)
        h = self.mid[2](h, temb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if i < len(self.unpool):
                size = skips[-1].shape[-2:]
                h = self.unpool[i](F.interpolate(h, size=size, mode="nearest"))
        out = self.out(F.silu(self.out_norm(h)))
        assert out.shape == z.shape
        return out  # [B, C, H, W]
