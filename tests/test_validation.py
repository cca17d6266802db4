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
        reverse_variance(proc, torch.tensor([1]), torch.tensor([2]), "learned")


def test_ndm_needs_x0_prediction():
    proc = NeuralForward(discrete_schedule("cosine", 10), torch.nn.Identity())
    with pytest.raises(ValueError, match="needs prediction 'x0'"):
        Denoiser(torch.nn.Identity(), proc, prediction="eps")


def test_decoder_levels_and_time_ranges():
    with pytest.raises(ValueError):
        DiscretizedGaussianDecoder(1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        discrete_schedule("cosine", 10).check_times(torch.tensor([11]))
    with pytest.raises(ValueError, match="grid"):
        discrete_schedule("cosine", 10).check_times(torch.tensor([0.55]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        continuous_schedule("cosine").check_times(torch.tensor([1.5]))
    with pytest.raises(TypeError, match="float times"):
        continuous_schedule("cosine").alpha(torch.tensor([1]))


def test_toy_split_is_seeded_and_disjoint_draws():
    from diffusion_study.data import toy_split

    a_train, a_test = toy_split("two_moons", 500, 100, seed=3)
    b_train, b_test = toy_split("two_moons", 500, 100, seed=3)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    assert a_train.shape == (500, 2) and a_test.shape == (100, 2)
    assert not torch.equal(a_train[:100], a_test)


def test_checkerboard_points_lie_on_dark_squares_only():
    from diffusion_study.data import checkerboard

    x = checkerboard(5000, torch.Generator().manual_seed(0), squares=4, scale=2.0)
    cells = torch.floor((x + 2.0) / 1.0).long()
    assert ((cells >= 0) & (cells < 4)).all()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    assert len({tuple(c) for c in cells.tolist()}) == 8  # all 8 dark squares are used


@pytest.mark.parametrize("value", ["abc", None, float("nan"), float("inf"), 2.5, 0, -3, True, [3]])
def test_positive_int_names_the_parameter_for_every_bad_value(value):
    from diffusion_study.validation import positive_int

    with pytest.raises(ValueError, match=r"^steps must be a positive integer, got "):
        positive_int("steps", value)


def test_positive_int_accepts_integral_values():
    from diffusion_study.validation import positive_int

    assert positive_int("T", 3) == 3 and positive_int("T", 4.0) == 4 and positive_int("T", "5") == 5


def test_positive_int_accepts_numpy_and_torch_integers():
    import numpy as np

    from diffusion_study.validation import positive_int

    assert positive_int("T", np.int64(7)) == 7 and positive_int("T", np.float64(3.0)) == 3
    assert positive_int("T", torch.tensor(5)) == 5
    with pytest.raises(ValueError):
        positive_int("T", np.bool_(True))
