"""Classifiers (chapter 3): the Frechet distance against closed forms, a digits classifier that learns, and
noise-conditional classifiers that approach the exact class posterior of a mixture."""

import numpy as np
import pytest
import torch
from diffusion_study.core.processes import GaussianForward
from diffusion_study.core.schedules import continuous_schedule
from diffusion_study.data.images import digits_labels, load_image_dataset
from diffusion_study.data.toy2d import gaussian_ring
from diffusion_study.nets.classifiers import (
    DigitsClassifier,
    MemberStack,
    NoisyClassifierMLP,
    NoisyDigitsClassifier,
    accuracy,
    classification_loss,
    frechet_distance,
    noisy_accuracy,
    noisy_classifier_loss,
    predict,
)
from diffusion_study.training.loop import train
from scipy import linalg


def _scipy_frechet(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    ma, mb = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(sa @ sb).real
    return float(((ma - mb) ** 2).sum() + np.trace(sa + sb - 2 * root))


def test_frechet_distance_matches_scipy_and_is_zero_for_equal_sets():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g) @ torch.randn(6, 6, generator=g)
    b = torch.randn(400, 6, generator=g) * 2 + 1
    assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)
    assert abs(frechet_distance(a, a)) < 1e-8
    with pytest.raises(ValueError, match="features"):
        frechet_distance(a, b[:, :3])


def test_frechet_distance_of_gaussians_tends_to_the_closed_form():
    """Samples whitened to exactly the moments of N(0, I) and N(m, s^2 I) in F dims: |m|^2 + F (1 - s)^2."""
    g = torch.Generator().manual_seed(1)
    F, m, s = 4, torch.tensor([1.0, 0.0, -0.5, 0.0], dtype=torch.float64), 1.5

    def exact_moments(n):  # n draws with sample mean 0 and sample covariance I exactly
        x = torch.randn(n, F, generator=g, dtype=torch.float64)
        x = x - x.mean(0)
        return x @ torch.linalg.inv(torch.linalg.cholesky(x.T @ x / (n - 1))).T

    a, b = exact_moments(300), m + s * exact_moments(500)
    assert frechet_distance(a, b) == pytest.approx(float((m**2).sum()) + F * (1 - s) ** 2, rel=1e-9)


def test_digits_classifier_learns_and_exposes_features():
    data = load_image_dataset("digits")
    y_train, y_test = digits_labels()
    torch.manual_seed(0)
    net = train(DigitsClassifier(features=32), classification_loss, (data.train, y_train), steps=300,
                batch_size=128, lr=3e-3, ema_decay=None, progress=False).model.eval()
    assert accuracy(net, data.test, y_test) > 0.9
    assert net.features(data.test[:7]).shape == (7, 32)
    torch.testing.assert_close(predict(net, data.test.flatten(1), batch_size=50), net(data.test).argmax(-1))


def test_noisy_classifier_approaches_the_exact_posterior():
    """Trained on z_t ~ q(z_t | x), its accuracy at a given t is close to the exact posterior's (Bayes) accuracy."""
    mix = gaussian_ring()
    proc = GaussianForward(continuous_schedule("logsnr_cosine", logsnr_max=8.0, logsnr_min=-10.0))
    x, y = mix.sample_with_labels(8000, torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    net = train(NoisyClassifierMLP(2, 3), lambda m, b, g: noisy_classifier_loss(m, proc, b, g), (x, y), steps=400,
                batch_size=256, lr=3e-3, progress=False).ema
    for t in (0.2, 0.5):
        g = torch.Generator().manual_seed(3)
        trained = noisy_accuracy(net, proc, x[:4000], y[:4000], t, g)
        time = torch.tensor(t, dtype=torch.float64)
        g = torch.Generator().manual_seed(3)
        z = proc.sample(x[:4000], torch.full((4000,), t, dtype=torch.float64), torch.randn(4000, 2, generator=g))
        bayes = float((mix.responsibilities(z, proc.alpha(time), proc.sigma(time)).argmax(-1) == y[:4000]).double().mean())
        assert trained > bayes - 0.03


def test_classifier_shapes_and_member_stack():
    torch.manual_seed(0)
    dig = NoisyDigitsClassifier(channels=8)
    assert dig(torch.randn(3, 5, 64), torch.rand(3, 5)).shape == (3, 5, 10)
    assert dig(torch.randn(4, 1, 8, 8), torch.rand(4)).shape == (4, 10)
    stack = MemberStack([NoisyClassifierMLP(2, 3), NoisyClassifierMLP(2, 3)])
    z, t = torch.randn(2, 6, 2), torch.rand(2, 6)
    out = stack(z, t)
    assert out.shape == (2, 6, 3)
    torch.testing.assert_close(out[1], stack.members[1](z[1], t[1]))
    loss = noisy_classifier_loss(dig, GaussianForward(continuous_schedule("cosine")),
                                 (torch.randn(5, 64), torch.randint(0, 10, (5,))), torch.Generator().manual_seed(0))
    assert loss.shape == (5,)
