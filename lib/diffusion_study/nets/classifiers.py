"""Classifiers the library trains itself: a digits classifier whose features define a Frechet distance,
and noise-conditional classifiers for classifier guidance (chapter 3).

- `DigitsClassifier`: a small conv net on clean 8x8 digits, logits [B, 10]; `features` is its
  penultimate layer. `frechet_distance` between two feature sets is the Frechet (2-Wasserstein)
  distance of the Gaussians fitted to them: the FID recipe with this classifier in place of
  Inception, so its values are "Frechet distance in digits-classifier features", not FID.
- `NoisyClassifierMLP` (2D) and `NoisyDigitsClassifier` (a conv net for 8x8 digits): logits of
  p_phi(y | z_t, t), trained on z_t ~ q(z_t | x) at t drawn as in diffusion training
  (`noisy_classifier_loss`), called `classifier(z, time) -> [*batch, K]` as
  `guidance.ClassifierGuidance` expects. `MemberStack` runs one classifier per ensemble member.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusion_study.base import rng
from diffusion_study.base.args import positive_int
from diffusion_study.core.objectives import sample_time
from diffusion_study.nets.models import time_embedding

# ---------------------------------------------------------------------------------------------
# A clean digits classifier and the Frechet distance in its features
# ---------------------------------------------------------------------------------------------


class DigitsClassifier(nn.Module):
    """conv(1->c, 3) - SiLU - conv(c->2c, 3, stride 2) - SiLU - linear(2c*16 -> features) - SiLU - linear(-> 10).

    forward(x: [B, 1, 8, 8] or [B, 64]) -> logits [B, 10]; features(x) -> [B, features].
    """

    def __init__(self, channels: int = 16, features: int = 64, num_classes: int = 10):
        super().__init__()
        c = positive_int("channels", channels)
        self.conv1, self.conv2 = nn.Conv2d(1, c, 3, padding=1), nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.hidden = nn.Linear(2 * c * 16, positive_int("features", features))
        self.head = nn.Linear(features, positive_int("num_classes", num_classes))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer activations [B, features] of images x: [B, 1, 8, 8] or [B, 64]."""
        h = F.silu(self.conv1(x.reshape(-1, 1, 8, 8)))  # [B, c, 8, 8]
        h = F.silu(self.conv2(h))  # [B, 2c, 4, 4]
        return F.silu(self.hidden(h.flatten(1)))  # [B, features]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def classification_loss(net: nn.Module, batch: tuple[Tensor, Tensor], generator=None) -> Tensor:
    """Cross-entropy per example [B] of net(x) against labels y: `train`'s loss_fn for a clean classifier."""
    x, y = batch
    return F.cross_entropy(net(x), y, reduction="none")


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    """Share of examples whose argmax logit is the label."""
    return float((net(x).argmax(-1) == y).double().mean())


@torch.no_grad()
def predict(net: nn.Module, x: Tensor, batch_size: int = 2048) -> Tensor:
    """argmax labels of x: [N, ...] -> [N], in chunks."""
    return torch.cat([net(part).argmax(-1) for part in x.split(positive_int("batch_size", batch_size))])


def _cov(features: Tensor) -> tuple[Tensor, Tensor]:
    f = features.double()
    mean = f.mean(0)
    centred = f - mean
    return mean, centred.T @ centred / (len(f) - 1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||m_a - m_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) of features a: [N, F], b: [M, F] (float64).

    The squared 2-Wasserstein distance between Gaussians with the samples' means and covariances
    (Frechet 1957; Heusel et al. 2017 with Inception features). The matrix square roots come from
    symmetric eigendecompositions, so the trace term is real and exact up to rounding.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [N, F] and [M, F], got {tuple(a.shape)} and {tuple(b.shape)}")
    (m_a, s_a), (m_b, s_b) = _cov(a), _cov(b)
    vals, vecs = torch.linalg.eigh(s_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    return float(((m_a - m_b) ** 2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * cross)


@torch.no_grad()
def feature_frechet_distance(net: DigitsClassifier, x: Tensor, reference: Tensor) -> float:
    """Frechet distance between net.features of images x and of `reference` ([N, 1, 8, 8] or [N, 64])."""
    return frechet_distance(net.features(x), net.features(reference))


# ---------------------------------------------------------------------------------------------
# Noise-conditional classifiers for classifier guidance
# ---------------------------------------------------------------------------------------------


class NoisyClassifierMLP(nn.Module):
    """p_phi(y | z_t, t) for vector data: MLP on concat(z, time features), `depth` SiLU layers.

    forward(z: [B, D], t: [B]) -> logits [B, K] (t the network time in [0, 1], as the denoisers').
    """

    def __init__(self, dim: int, num_classes: int, hidden: int = 64, depth: int = 2, time_dim: int = 16):
        super().__init__()
        self.time_dim = positive_int("time_dim", time_dim)
        sizes = [positive_int("dim", dim) + time_dim] + [positive_int("hidden", hidden)] * positive_int("depth", depth)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(hidden, positive_int("num_classes", num_classes))

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        h = torch.cat([z, time_embedding(t.reshape(-1), self.time_dim).to(z.dtype)], -1)  # [B, D + time_dim]
        for layer in self.layers:
            h = F.silu(layer(h))
        return self.head(h)  # [B, K]


class NoisyDigitsClassifier(nn.Module):
    """p_phi(y | z_t, t) for 8x8 digits: two convs with the time embedding added per channel, then a linear head.

    forward(z: [*batch, 64] or [*batch, 1, 8, 8], t: [*batch]) -> logits [*batch, 10].
    """

    def __init__(self, channels: int = 32, num_classes: int = 10, time_dim: int = 32):
        super().__init__()
        c = positive_int("channels", channels)
        self.time_dim = positive_int("time_dim", time_dim)
        self.time = nn.Sequential(nn.Linear(time_dim, 2 * c), nn.SiLU())
        self.conv1, self.conv2 = nn.Conv2d(1, c, 3, padding=1), nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.shift1, self.shift2 = nn.Linear(2 * c, c), nn.Linear(2 * c, 2 * c)
        self.head = nn.Linear(2 * c * 16, positive_int("num_classes", num_classes))

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        batch = t.shape
        x = z.reshape(-1, 1, 8, 8)
        temb = self.time(time_embedding(t.reshape(-1), self.time_dim).to(z.dtype))  # [B, 2c]
        h = F.silu(self.conv1(x) + self.shift1(temb)[:, :, None, None])  # [B, c, 8, 8]
        h = F.silu(self.conv2(h) + self.shift2(temb)[:, :, None, None])  # [B, 2c, 4, 4]
        return self.head(h.flatten(1)).reshape(batch + (-1,))  # [*batch, K]


class MemberStack(nn.Module):
    """G classifiers run on an ensemble's batch: forward(z: [G, B, ...], t: [G, B]) -> [G, B, K], member g on z[g]."""

    def __init__(self, classifiers):
        super().__init__()
        self.members = nn.ModuleList(classifiers)

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        assert z.shape[0] == len(self.members), f"{z.shape[0]} members in z, {len(self.members)} classifiers"
        return torch.stack([net(z[g], t[g]) for g, net in enumerate(self.members)])


def noisy_classifier_loss(classifier: nn.Module, process, batch: tuple[Tensor, Tensor], generator=None) -> Tensor:
    """Cross-entropy [B] of classifier(z_t, t) against y, z_t ~ q(z_t | x), t as in diffusion training.

    batch = (x: [B, *event], y: [B]); `train`'s loss_fn for a noise-conditional classifier.
    """
    x, y = batch
    t = sample_time(process.schedule, y.shape, x, generator)
    z = process.sample(x, t, rng.randn(x.shape, x, generator))
    return F.cross_entropy(classifier(z, process.schedule.time(t)), y, reduction="none")


@torch.no_grad()
def noisy_accuracy(classifier: nn.Module, process, x: Tensor, y: Tensor, t: float, generator=None) -> float:
    """Accuracy of classifier(z_t, t) on z_t ~ q(z_t | x) at one time t (a float in [0, 1])."""
    time = torch.full(y.shape, float(t), dtype=torch.float64)
    z = process.sample(x, time, rng.randn(x.shape, x, generator))
    return float((classifier(z, time.float()).argmax(-1) == y).double().mean())


def log_prob_of_label(logits: Tensor, y: Tensor) -> Tensor:
    """log softmax(logits)[y], [*batch]."""
    return torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def entropy_bits(logits: Tensor) -> Tensor:
    """Entropy of softmax(logits) in bits, [*batch]."""
    log_p = torch.log_softmax(logits, -1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(2)
