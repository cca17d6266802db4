"""Chapter 5's measurements: DDPM against NDM on images, trained on their bound, and what F does to images.

- `image_model`: the chapter's pair of models (also the command-line trainer's, `diffusion_study.studies.cli`, and
  so the GPU run's). x_hat is a U-Net scaled as in EDM (`transforms.PreconditionedX0`, prediction 'x0',
  clipped to [-1, 1]), the same for both; NDM adds a U-Net F of the same size, F(x, t) = x + t net(x, t)
  with net's output layer at zero and its time features slowed (`transforms.SlowTime`), so an NDM starts as
  the DDPM with the same x_hat weights. bf16 makes the U-Nets `AutocastUNet`s (`full_precision` undoes it).
- `sampled_bound`: an unbiased one-term estimate of the discrete bound `objectives.vlb_terms` (the loss
  both models are trained on): one of the K terms per example, drawn uniformly and scaled by K, with the
  decoder term as one of them, plus the prior. One call of x_hat per example (`vlb_terms(n_timesteps=1)`
  makes two); the terms equal `objectives.diffusion_kl` and `objectives.decoder_nll_at` on the same noise
  (tests/test_image_study.py). `training_loss` picks it, the continuous bound or the noise-prediction
  loss by name, for the command-line trainer.
- `fit`: train one (kind, bound, seed) configuration with `train.train`, keeping EMA snapshots at given
  steps (matched compute) with their wall times.
- measures of images, [*batch] per image: `ink_mass`, `contrast`, `stroke_width`; `transform_measures`
  compares them on F(x, t) and x over t (claim N5).
- `matched_steps`: NDM's optimizer steps at DDPM's wall time, given a cost ratio per step (the chapter matches
  wall time in the run itself instead: `fit(match_seconds=...)`).
- `image_baselines`: the per-pixel histogram and the mixture of categoricals on the same test images, in
  the bound's bits/dim (the adequacy gate's baselines, `eval.adequacy`).
- `final_sample`: the decoder's output at the end of an ancestral chain, on the pixel grid.
- `gpu_results`: the chapter's GPU result files, when a GPU run has made them.

Shapes: images x: [B, C, H, W] in [-1, 1]; times float64, 0-dim or [B]; per-example terms [B] in nats.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
from torch import Tensor

from diffusion_study.base import rng
from diffusion_study.base.args import choose, positive_int
from diffusion_study.core import continuous_time
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.events import sum_event
from diffusion_study.core.objectives import gaussian_kl
from diffusion_study.core.processes import GaussianForward, NeuralForward
from diffusion_study.core.samplers import ddpm_sample
from diffusion_study.core.schedules import coefficient
from diffusion_study.data.images import from_uint, to_uint
from diffusion_study.eval import baselines as _baselines
from diffusion_study.nets import transforms
from diffusion_study.nets.models import UNet, count_parameters
from diffusion_study.studies import fitting

KINDS = ("ddpm", "ndm", "ndm-scalar")  # ndm-scalar: F(x, t) = (1 + t g(t)) x, a learned schedule only (control)


# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------


class AutocastUNet(UNet):
    """A UNet whose forward runs under bfloat16 autocast while `autocast_enabled` (output float32).

    The same parameters and names as UNet (checkpoints are interchangeable); `full_precision`
    switches it off for evaluation. forward(z [B, C, H, W], t [B]) -> [B, C, H, W] float32."""

    autocast_enabled = True

    def forward(self, z: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if not self.autocast_enabled:
            return super().forward(z, t, y)
        with torch.autocast(z.device.type, dtype=torch.bfloat16):
            return super().forward(z, t, y).float()


@contextlib.contextmanager
def full_precision(module: torch.nn.Module):
    """Within the block every AutocastUNet inside `module` runs in float32."""
    nets = [m for m in module.modules() if isinstance(m, AutocastUNet)]
    saved = [m.autocast_enabled for m in nets]
    for m in nets:
        m.autocast_enabled = False
    try:
        yield module
    finally:
        for m, value in zip(nets, saved):
            m.autocast_enabled = value


def unets(model: torch.nn.Module) -> list[UNet]:
    """The U-Nets inside `model`: x_hat's, then F's for NDM (inside `transforms.SlowTime` when F's time is slowed)."""
    return [m for m in model.modules() if isinstance(m, UNet)]


def image_model(kind: str, schedule, *, channels: int = 1, base: int = 16, mults: tuple[int, ...] = (1, 2),
                attention: bool = False, data_std: float = 0.5, seed: int = 0,
                clip: tuple[float, float] | None = (-1.0, 1.0), f_time_scale: float | None = 0.01,
                bf16: bool = False) -> Denoiser:
    """DDPM (kind 'ddpm', F = identity), NDM ('ndm', a U-Net F of x_hat's size) or the learned-schedule control
    ('ndm-scalar', F(x, t) = (1 + t g(t)) x with g a small MLP of t: `transforms.ScalarGain`) for images (chapter 5; also the
    command-line trainer's model, `diffusion_study.studies.cli`).

    x_hat = PreconditionedX0(UNet(channels, base, mults, attention)), prediction 'x0', clipped to `clip` (None:
    not clipped). The x_hat U-Net is drawn first after torch.manual_seed(seed), so DDPM and NDM of one seed
    start from the same x_hat weights; F's U-Net comes next, F(x, t) = x + t net(x, t) with its output layer
    zero (F = x at the start), its time features slowed by `f_time_scale` (`transforms.SlowTime`, as in chapter 4;
    None keeps the denoisers' features). `attention`: self-attention at the lowest resolution of both U-Nets.
    bf16: the U-Nets are `AutocastUNet`s (bfloat16 autocast inside their forward; the same parameters).
    z: [B, C, H, W] -> x_hat [B, C, H, W].
    """
    choose("model", kind, KINDS)
    torch.manual_seed(seed)
    x_net = transforms.PreconditionedX0(UNet(channels, base, tuple(mults), attention), schedule, data_std)
    if kind == "ddpm":
        process = GaussianForward(schedule)
    elif kind == "ndm-scalar":
        process = NeuralForward(schedule, transforms.ScalarGain(event_dims=3))
    else:
        f_net = transforms.zero_output_layer(UNet(channels, base, tuple(mults), attention))
        process = NeuralForward(schedule, f_net if f_time_scale is None else transforms.SlowTime(f_net, f_time_scale))
    model = Denoiser(x_net, process, prediction="x0", clip=clip)
    if bf16:
        for net in unets(model):
            net.__class__ = AutocastUNet  # same parameters, forward under autocast
    return model


def parameter_counts(model: Denoiser) -> dict[str, int]:
    """Trainable parameters of x_hat and of F (0 for DDPM), and their total."""
    x_hat = count_parameters(model.net)
    f = count_parameters(model.process)
    return {"x_hat": x_hat, "F": f, "total": x_hat + f}


# ---------------------------------------------------------------------------------------
# The bound both models are trained on
# ---------------------------------------------------------------------------------------


def _grid_times(times: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """(t_{i-1}, t_i) of term i (1..K) on the descending grid 1 = t_K > ... > t_0 = 0; float64 like index."""
    K = len(times) - 1
    grid = times.to(index.device)
    return grid[K - index + 1], grid[K - index]


def sampled_bound(model, x: Tensor, times: Tensor, *, decoder, generator=None, index: Tensor | None = None,
                  noise: Tensor | None = None) -> Tensor:
    """prior + K * term_i, i ~ U{1..K} per example: an unbiased estimate of `vlb_terms(...).total`; [B] nats.

    times: descending grid [K + 1] (1 = t_K > ... > t_1 > t_0 = 0), K >= 2. Term 1 is the decoder
    -log p(x | z_{t_1}) with mean x_hat(z_{t_1}, t_1) and std sigma(t_1); term i >= 2 is
    KL(q(z_{t_{i-1}} | z_{t_i}, x) || q(z_{t_{i-1}} | z_{t_i}, x_hat)) with z_{t_i} ~ q(z_{t_i} | x), as
    `vlb_terms` defines them. `index` [B] (values 1..K) and `noise` (like x) fix the draws (tests).
    F is called twice (at (x, t_i), (x, t_{i-1}), (x, 1) stacked; at (x_hat, t_i), (x_hat, t_{i-1})),
    x_hat once.
    """
    process = model.process
    K = len(times) - 1
    if K < 2:
        raise ValueError("sampled_bound needs a grid of at least two steps")
    event_dims = x.ndim - 1
    batch = x.shape[:1]
    if index is None:
        index = rng.randint(1, K + 1, batch, x, generator)
    if noise is None:
        noise = rng.randn(x.shape, x, generator)
    s, t = _grid_times(times, index)
    one = torch.ones((), dtype=torch.float64, device=x.device)
    f_t, f_s, f_1 = process.transform_pairs([(x, t), (x, s), (x, one)])
    c = process.step_coefficients(s, t)
    z = coefficient(c.alpha_t, x) * f_t + coefficient(c.sigma_t, x) * noise
    x_hat = model(z, t)
    g_t, g_s = process.transform_pairs([(x_hat, t), (x_hat, s)])
    is_decoder = index == 1
    # KL between equal-variance Gaussians; term 1 has no KL (its s = 0 may have variance 0): a safe variance there
    var = torch.where(is_decoder, torch.ones_like(c.posterior_var), c.posterior_var)
    diff = process.mean_from_transforms(c, f_s, f_t, z) - process.mean_from_transforms(c, g_s, g_t, z)
    kl = sum_event(diff**2, event_dims) / (2 * var.to(diff.dtype))
    dec = decoder.nll(x, x_hat, coefficient(c.sigma_t, x), event_dims)
    term = torch.where(is_decoder, dec, kl)
    alpha_1, sigma_1 = process.alpha(one), process.sigma(one)
    prior = sum_event(gaussian_kl(coefficient(alpha_1, x) * f_1, coefficient(sigma_1**2, x).expand_as(x),
                                   torch.zeros_like(x), torch.ones_like(x)), event_dims)
    return prior + K * term


def bound_loss(times: Tensor, decoder):
    """`train`'s loss_fn for the bound on `times`: (model, x [B, C, H, W], generator) -> [B] nats."""
    times = times.double()
    return lambda model, x, generator: sampled_bound(model, x, times, decoder=decoder, generator=generator)


OBJECTIVES = ("simple", "vlb", "continuous")


def training_loss(objective: str, decoder, times: Tensor | None = None):
    """`train`'s loss_fn (model, x [B, C, H, W], generator) -> [B] for an objective of `OBJECTIVES`:
    'vlb' = `bound_loss(times, decoder)` (the discrete bound on the grid `times`, one term per image, nats),
    'continuous' = the continuous-time bound's total (`continuous_time.continuous_bound_terms`, one t per image, nats),
    'simple' = the noise-prediction loss (`continuous_time.noise_prediction_loss`, mean squared error; lets NDM's F collapse)."""
    choose("objective", objective, OBJECTIVES)
    if objective == "vlb":
        if times is None:
            raise ValueError("objective 'vlb' needs the grid `times`")
        return bound_loss(times, decoder)
    if objective == "continuous":
        return lambda model, x, generator: continuous_time.continuous_bound_terms(model, x, decoder=decoder,
                                                                      generator=generator).total
    return continuous_time.noise_prediction_loss


# ---------------------------------------------------------------------------------------
# Training one configuration
# ---------------------------------------------------------------------------------------


Fit = fitting.Fit


def fit(model: Denoiser, loss_fn, data: Tensor, steps: int, **kwargs) -> Fit:
    """`fitting.fit` (snapshots, matched wall time: keyword arguments as there) with x_hat's and F's parameter
    counts (`parameter_counts`) in `Fit.parameters`."""
    out = fitting.fit(model, loss_fn, data, steps, **kwargs)
    out.parameters = parameter_counts(model)
    return out


def matched_steps(steps: int, cost_ratio: float) -> int:
    """Optimizer steps of the costlier model (cost per step `cost_ratio` times the other's) in the wall time
    of `steps` steps of the other: round(steps / cost_ratio), at least 1."""
    if not cost_ratio > 0:
        raise ValueError(f"cost_ratio must be positive, got {cost_ratio!r}")
    return max(1, round(positive_int("steps", steps) / cost_ratio))


# ---------------------------------------------------------------------------------------
# What F does to images (claim N5)
# ---------------------------------------------------------------------------------------


def ink_mass(x: Tensor) -> Tensor:
    """Mean ink per pixel, (x + 1) / 2 averaged over [C, H, W] (ink = +1, paper = -1, as in digits and MNIST);
    not clipped, so a transform that pushes values beyond [-1, 1] counts; x: [*batch, C, H, W] -> [*batch]."""
    return ((x + 1) / 2).flatten(-3).mean(-1)


def contrast(x: Tensor) -> Tensor:
    """RMS contrast: the standard deviation of the pixel values of each image; [*batch, C, H, W] -> [*batch]."""
    return x.flatten(-3).std(-1)


def stroke_width(x: Tensor, level: float | None = None) -> Tensor:
    """Stroke width in pixels: the width w of the rectangle with the image's ink area A and ink perimeter P.

    The ink is the set of pixels above `level` (default: each image's mid-range (max + min) / 2, so the
    measure ignores brightness and contrast, which `ink_mass` and `contrast` see), summed over channels;
    A counts ink pixels, P the 4-neighbour edges between ink and paper (outside the image is paper).
    A w x L rectangle has A = w L and P = 2 (w + L), so w = P/4 - sqrt((P/4)^2 - A) (the smaller root;
    a compact blob with (P/4)^2 < A gets w = P/4). Exact for axis-aligned bars; x: [*batch, C, H, W] -> [*batch].
    """
    x = x.double()
    if level is None:
        flat = x.flatten(-3)
        level_t = ((flat.amax(-1) + flat.amin(-1)) / 2)[..., None, None, None]
    else:
        level_t = torch.as_tensor(level, dtype=x.dtype)
    ink = (x > level_t).double()
    pad = torch.nn.functional.pad(ink, (1, 1, 1, 1))  # paper around the image; pads the last two dims
    edges = (pad[..., 1:, :] - pad[..., :-1, :]).abs().sum((-3, -2, -1)) + (pad[..., :, 1:] - pad[..., :, :-1]).abs().sum((-3, -2, -1))
    area = ink.sum((-3, -2, -1))
    q = edges / 4
    return q - (q**2 - area).clamp(min=0).sqrt()


MEASURES = {"ink mass": ink_mass, "stroke width": stroke_width, "contrast": contrast}


@torch.no_grad()
def transform_measures(model: Denoiser, x: Tensor, times) -> dict[str, Tensor]:
    """{measure: [len(times)] ratio mean over images of measure(F(x, t)) / mean of measure(x)} for each of
    `MEASURES`, at each t in `times` (floats in [0, 1]); x: [B, C, H, W]. 1 everywhere for DDPM (F = x)."""
    process = model.process
    base = {name: fn(x).double().mean() for name, fn in MEASURES.items()}
    out = {name: [] for name in MEASURES}
    for t in times:
        f = process.transform(x, torch.tensor(float(t), dtype=torch.float64))
        for name, fn in MEASURES.items():
            out[name].append(fn(f).double().mean() / base[name])
    return {name: torch.stack(v) for name, v in out.items()}


@torch.no_grad()
def transform_images(model: Denoiser, x: Tensor, times) -> Tensor:
    """F(x, t) for each t in `times`: [len(times), B, C, H, W] (for pictures)."""
    return torch.stack([model.process.transform(x, torch.tensor(float(t), dtype=torch.float64)) for t in times])


# ---------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def final_sample(model: Denoiser, start: Tensor, times: Tensor, levels: int, generator=None) -> Tensor:
    """The model's sample: the ancestral chain (`samplers.ddpm_sample`, NDM's p(z_s | z_t) = q(z_s | z_t, x_hat))
    from `start` [B, C, H, W] along `times`, and at its last step the decoder's mean x_hat(z_{t_1}, t_1),
    clipped to [-1, 1] and rounded to the `levels` pixel values (the decoder's most likely image); like start."""
    last = {}
    ddpm_sample(model, start, times, callback=lambda d: last.update(x0=d["x0_hat"]), generator=generator)
    return from_uint(to_uint(last["x0"].clamp(-1, 1), levels), levels)


# ---------------------------------------------------------------------------------------
# GPU results, when they exist
# ---------------------------------------------------------------------------------------


def gpu_results(directory: str | Path) -> list[dict]:
    """The JSON result files under `directory` (e.g. results/05_images/gpu), each with its "path"; [] if none."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    records = []
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            record["path"] = path.name
            records.append(record)
    return records


def image_baselines(train: Tensor, test: Tensor, levels: int, *, components: int = 10, seed: int = 0,
                    iterations: int = 100) -> dict[str, float]:
    """Bits/dim of the test images [M, C, H, W] in [-1, 1] under two models fitted to the training images: every
    pixel independent (`eval.baselines.histogram_bits`, Laplace-smoothed) and a mixture of `components` products
    of per-pixel categoricals (`eval.baselines.CategoricalMixture`, EM, seeded). Both are exact probability
    masses on the `levels` pixel values, the values the discretised decoder bins onto: the same bits/dim as the
    models' bounds. {name: bits/dim}."""
    tr, te = to_uint(train.detach().cpu(), levels), to_uint(test.detach().cpu(), levels)
    mixture = _baselines.CategoricalMixture.fit(tr, levels, components, iterations=iterations, seed=seed)
    return {"per-pixel histogram": _baselines.histogram_bits(tr, te, levels),
            f"mixture of {components} categoricals": mixture.bits(te)}


def bits(nats: Tensor, dims: int) -> Tensor:
    """nats per example -> bits per dimension."""
    return nats / (dims * math.log(2))


# ---------------------------------------------------------------------------------------
# The schedule's end point, and a feature classifier for any image size
# ---------------------------------------------------------------------------------------


def decoder_floor(x: Tensor, sigma: float, levels: int) -> float:
    """Bits/dim of the discretised decoder p(x | z) = N(x_hat, sigma^2) binned on `levels` values when x_hat = x
    exactly: the least the decoder term can cost at noise sigma (a perfect denoiser). x: [N, *event] on the grid."""
    from diffusion_study.core.objectives import DiscretizedGaussianDecoder

    dec = DiscretizedGaussianDecoder(levels)
    nats = dec.nll(x.double(), x.double(), torch.tensor(float(sigma), dtype=torch.float64), x.ndim - 1)
    return float(bits(nats, math.prod(x.shape[1:])).mean())


class ImageClassifier(torch.nn.Module):
    """A small conv classifier for images of any size (MNIST in the gpu profile): three 3x3 convs (the last two
    with stride 2), global average pooling, a hidden layer `features` wide, logits [B, num_classes].
    `features(x)` is the hidden layer, whose Frechet distance compares sample sets (as chapter 3's digits one)."""

    def __init__(self, channels: int = 1, width: int = 32, features: int = 64, num_classes: int = 10):
        super().__init__()
        w = positive_int("width", width)
        self.convs = torch.nn.ModuleList([torch.nn.Conv2d(channels, w, 3, padding=1),
                                          torch.nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
                                          torch.nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1)])
        self.hidden = torch.nn.Linear(2 * w, positive_int("features", features))
        self.head = torch.nn.Linear(features, positive_int("num_classes", num_classes))

    def features(self, x: Tensor) -> Tensor:
        h = x
        for conv in self.convs:
            h = torch.nn.functional.silu(conv(h))
        return torch.nn.functional.silu(self.hidden(h.mean((-2, -1))))  # [B, features]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def dataset_labels(dataset) -> tuple[Tensor, Tensor]:
    """(train [N], test [M]) int64 class labels of an `images.ImageDataset`: the digits' from `images.digits_labels`,
    others from the dataset's `train_labels` / `test_labels` attributes when it has them."""
    from diffusion_study.data.images import digits_labels

    if dataset.name == "digits":
        return digits_labels()
    train_y, test_y = getattr(dataset, "train_labels", None), getattr(dataset, "test_labels", None)
    if train_y is None or test_y is None:
        raise ValueError(f"the {dataset.name!r} dataset carries no labels (train_labels / test_labels); "
                         "the classifier-feature Frechet distance needs them")
    return torch.as_tensor(train_y).long(), torch.as_tensor(test_y).long()


def gpu_summary(record: dict) -> list[tuple[str, float]]:
    """The numeric results of a GPU result file whose key path names bits/dim ('bits', 'bpd'), as (path, value)."""
    found = []

    def walk(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if any(w in path.lower() for w in ("bits", "bpd")):
                found.append((path, float(value)))

    walk(record.get("metrics", {}), "")
    return found
