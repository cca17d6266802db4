"""Image data sets as tensors in [-1, 1]: scikit-learn digits (offline), MNIST, CIFAR-10.

A pixel with `levels` discrete values k = 0..levels-1 maps to x = 2 k / (levels - 1) - 1, so
neighbouring values lie `bin_width(levels)` apart; the discretised decoder and bits/dim use
that width (digits: 17 levels, bins of 0.125; MNIST and CIFAR-10: 256 levels, bins of 2/255).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusion_study.validation import choose, positive_int

DATASETS = ("digits", "mnist", "cifar10")
DIGITS_TRAIN = 1500  # of 1797 images; the other 297 are the test set
DIGITS_SEED = 0


@dataclass(frozen=True)
class ImageDataset:
    """train: [N, C, H, W], test: [M, C, H, W], float32 in [-1, 1]; `levels` values per pixel."""

    name: str
    train: Tensor
    test: Tensor
    levels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train.shape[1:])

    @property
    def dims(self) -> int:
        """C * H * W, the D in bits/dim."""
        return int(np.prod(self.shape))


def bin_width(levels: int) -> float:
    """Distance between neighbouring pixel values on [-1, 1]: 2 / (levels - 1)."""
    levels = positive_int("levels", levels)
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    return 2.0 / (levels - 1)


def from_uint(k: Tensor, levels: int) -> Tensor:
    """Integer pixel values 0..levels-1 -> float32 in [-1, 1]."""
    return k.float() * bin_width(levels) - 1.0


def to_uint(x: Tensor, levels: int) -> Tensor:
    """Inverse of from_uint: [-1, 1] -> nearest integer 0..levels-1 (int64), clamped."""
    k = torch.round((x + 1.0) / bin_width(levels))
    return k.clamp(0, levels - 1).long()


def load_image_dataset(name: str, root: str | Path = "data") -> ImageDataset:
    """Load an image set as tensors in [-1, 1].

    - "digits": scikit-learn's 8x8 digits (1797 images, values 0..16, 17 levels), shipped
      offline. Split by a fixed permutation (torch.Generator seeded with 0): the first 1500
      are train, the other 297 test. `root` is not used.
    - "mnist": 28x28, 60000 train / 10000 test, 256 levels;
    - "cifar10": 3x32x32, 50000 train / 10000 test, 256 levels.
    MNIST and CIFAR-10 come from torchvision, downloaded into `root` on first use; offline, a
    RuntimeError says how to proceed.
    """
    choose("image dataset", name, DATASETS)
    if name == "digits":
        return _digits()
    train, test = (_torchvision(name, Path(root), split) for split in (True, False))
    return ImageDataset(name, from_uint(train, 256), from_uint(test, 256), 256)


def _digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images).round().long()[:, None]  # [1797, 1, 8, 8]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(DIGITS_SEED))
    x = from_uint(images[order], 17)
    return ImageDataset("digits", x[:DIGITS_TRAIN], x[DIGITS_TRAIN:], 17)


def _torchvision(name: str, root: Path, train: bool) -> Tensor:
    """uint8 images [N, C, H, W] from torchvision's MNIST or CIFAR10 (downloading if needed)."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        data = cls(str(root), train=train, download=True).data
    except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision wraps some
        raise RuntimeError(
            f"could not download the {name} dataset to {root} ({error}). Without internet, use "
            f"name 'digits' (it ships with scikit-learn), or place torchvision's {cls.__name__} "
            f"files in the data folder {root} yourself."
        ) from error
    data = torch.as_tensor(np.asarray(data))
    return data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2).contiguous()  # [N, C, H, W]


def digits_labels() -> tuple[Tensor, Tensor]:
    """The class labels 0..9 of `load_image_dataset("digits")`: (train [1500], test [297]) int64, in
    the same fixed order as its images (class-conditional models and classifiers, chapter 3)."""
    from sklearn.datasets import load_digits

    labels = torch.from_numpy(load_digits().target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SEED))
    labels = labels[order]
    return labels[:DIGITS_TRAIN], labels[DIGITS_TRAIN:]
