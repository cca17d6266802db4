"""eval.baselines: the baselines of the adequacy gates, checked on data whose answers are known."""

import math

import pytest
import torch
from diffusion_study.data.toy2d import checkerboard, two_gaussians, two_moons
from diffusion_study.eval import baselines as B


def _independent(n, probs, generator):
    """n images of D independent pixels, pixel d drawn from probs[d] ([D, L]); [n, D] int64."""
    return torch.multinomial(probs, n, replacement=True, generator=generator).T


def test_histogram_bits_is_the_entropy_of_independent_pixels():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(6, 5, generator=g, dtype=torch.float64), -1)  # 6 pixels, 5 levels
    train, test = _independent(20000, probs, g), _independent(20000, probs, g)
    entropy_bits = float(-(probs * probs.log2()).sum() / 6)
    got = B.histogram_bits(train, test, 5)
    # MC error of the test mean: sd of -log2 p(x) / D over 20000 images, well below 0.01
    assert got == pytest.approx(entropy_bits, abs=0.01)
    assert got >= entropy_bits - 0.01  # a fitted histogram cannot beat the truth by more than MC error


def test_histogram_smoothing_gives_unseen_values_finite_cost():
    train = torch.zeros(10, 4, dtype=torch.long)
    test = torch.full((3, 4), 2, dtype=torch.long)
    bits = B.histogram_bits(train, test, 3, alpha=1.0)
    assert bits == pytest.approx(-math.log2(1 / 13))  # (0 + 1) / (10 + 3)


def test_histogram_refuses_values_off_the_levels():
    with pytest.raises(ValueError, match="0..2"):
        B.histogram_bits(torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 3), 3)


def test_em_never_lowers_its_objective_and_is_deterministic():
    g = torch.Generator().manual_seed(1)
    protos = torch.softmax(3 * torch.randn(3, 8, 4, generator=g, dtype=torch.float64), -1)
    x = torch.cat([_independent(200, protos[c], g) for c in range(3)])
    m = B.CategoricalMixture.fit(x, 4, 3, iterations=50, seed=0)
    assert len(m.history) > 2
    assert all(b >= a - 1e-9 for a, b in zip(m.history, m.history[1:]))
    again = B.CategoricalMixture.fit(x, 4, 3, iterations=50, seed=0)
    assert torch.equal(m.log_probs, again.log_probs) and m.history == again.history
    assert torch.allclose(m.log_probs.exp().sum(-1), torch.ones(3, 8, dtype=torch.float64))
    assert float(m.log_weights.exp().sum()) == pytest.approx(1.0)


def test_mixture_beats_the_histogram_on_clustered_images():
    g = torch.Generator().manual_seed(2)
    protos = torch.softmax(4 * torch.randn(4, 16, 5, generator=g, dtype=torch.float64), -1)
    draw = lambda n: torch.cat([_independent(n, protos[c], g) for c in range(4)])  # noqa: E731
    train, test = draw(300), draw(100)
    hist = B.histogram_bits(train, test, 5)
    mix = B.mixture_bits(train, test, 5, 4, seed=0)
    assert mix < hist - 0.1
    one = B.mixture_bits(train, test, 5, 1, seed=0)  # one component is the histogram
    assert one == pytest.approx(hist, abs=1e-9)


def test_gaussian_fit_matches_the_moments():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5000, 2, generator=g) @ torch.tensor([[1.0, 0.5], [0.0, 2.0]]) + torch.tensor([1.0, -2.0])
    fit = B.GaussianFit.fit(x)
    y = fit.sample(20000, torch.Generator().manual_seed(4)).double()
    assert torch.allclose(y.mean(0), fit.mean, atol=0.05)
    assert torch.allclose(torch.cov(y.T), fit.cov, atol=0.1)
    ref = torch.distributions.MultivariateNormal(fit.mean, fit.cov).log_prob(x.double())
    assert torch.allclose(fit.log_prob(x), ref)


def test_checkerboard_mass_tells_the_board_from_its_gaussian_fit():
    g = torch.Generator().manual_seed(5)
    data = checkerboard(4000, g)
    assert B.checkerboard_mass(data) == 1.0
    gauss = B.GaussianFit.fit(data).sample(4000, g)
    assert B.checkerboard_mass(gauss) < 0.6
    shifted = data + torch.tensor([1.0, 0.0])  # one square to the right: the empty squares
    assert B.checkerboard_mass(shifted) < 0.01
    batch = torch.stack([data, gauss])
    assert B.checkerboard_mass(batch).shape == (2,)


def test_moons_mass_tells_the_moons_from_their_gaussian_fit():
    g = torch.Generator().manual_seed(6)
    data = two_moons(4000, g)
    upper, lower = B.moons_mass(data)
    assert upper + lower > 0.98
    assert upper == pytest.approx(0.5, abs=0.03) and lower == pytest.approx(0.5, abs=0.03)
    gauss = B.GaussianFit.fit(data).sample(4000, g)
    assert sum(B.moons_mass(gauss)) < 0.75


def test_sample_nll_under_the_true_density():
    mix = two_gaussians()
    g = torch.Generator().manual_seed(7)
    data = mix.sample(4000, g)
    own = B.sample_nll(mix.log_prob, data)
    gauss = B.GaussianFit.fit(data).sample(4000, g)
    assert B.sample_nll(mix.log_prob, gauss) > own + 0.3  # the fit puts mass between the modes
