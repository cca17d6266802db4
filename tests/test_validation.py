"""Bad input gets a ValueError that names the valid choices."""

import pytest
import torch

from diffusion_study.data import toy_dataset
from diffusion_study.denoiser import Denoiser
from diffusion_study.objectives import DiscretizedGaussianDecoder, reverse_variance
from diffusion_study.processes import GaussianForward, NeuralForward
from diffusion_study.schedules import continuous_schedule, discrete_schedule


@pytest.mark.parametrize("build", [lambda: discrete_schedule("quadratic", 10), lambda: continuous_schedule("sigmoid")])
def test_unknown_schedule(build):
    with pytest.raises(ValueError, match="unknown schedule .*'linear', 'cosine', 'logsnr_cosine'"):
        build()


@pytest.mark.parametrize("T", [0, -5, 2.5, True])
def test_non_positive_or_fractional_step_counts(T):
    with pytest.raises(ValueError, match="T must be a positive integer"):
        discrete_schedule("cosine", T)


def test_unknown_toy_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'spiral'.*'two_gaussians', 'checkerboard', 'two_moons'"):
        toy_dataset("spiral", 10)


def test_unknown_prediction_and_variance():
    proc = GaussianForward(discrete_schedule("cosine", 10))
    with pytest.raises(ValueError, match="unknown prediction 'noise'"):
        Denoiser(torch.nn.Identity(), proc, prediction="noise")
    with pytest.raises(ValueError, match="'posterior', 'beta'"):
        reverse_variance(proc, torch.tensor([2]), torch.zeros(1, 2), "learned")


def test_ndm_needs_x0_prediction():
    proc = NeuralForward(discrete_schedule("cosine", 10), torch.nn.Identity())
    with pytest.raises(ValueError, match="needs prediction 'x0'"):
        Denoiser(torch.nn.Identity(), proc, prediction="eps")


def test_decoder_levels_and_time_ranges():
    with pytest.raises(ValueError):
        DiscretizedGaussianDecoder(1)
    with pytest.raises(ValueError, match="out of range"):
        discrete_schedule("cosine", 10).alpha(torch.tensor([11]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        continuous_schedule("cosine").alpha(torch.tensor([1.5]))
