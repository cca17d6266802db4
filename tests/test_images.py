"""Image loading: the digits split, the pixel mapping, torchvision sets without a network."""

from urllib.error import URLError

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torchvision import datasets

from diffusion_study.images import bin_width, from_uint, load_image_dataset, to_uint


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
