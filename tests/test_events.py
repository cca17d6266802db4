"""One answer to "which dims are one example?" and "is F the identity?", for every part of the library."""

import torch
from diffusion_study.core.continuous_time import (
    StraightForward,
    transform_with_velocity,
)
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.events import event_dims_of, sum_event
from diffusion_study.core.ode import standard_normal_log_prob
from diffusion_study.core.processes import (
    GaussianForward,
    NeuralForward,
    NoiseFreeForward,
)
from diffusion_study.core.schedules import continuous_schedule


def test_zero_event_dims_means_scalar_examples_everywhere():
    z = torch.randn(3)
    assert sum_event(z, 0).shape == (3,)
    assert standard_normal_log_prob(z, 0).shape == (3,)  # summed every dim before: shape []
    torch.testing.assert_close(standard_normal_log_prob(z, 0), -0.5 * z**2 - 0.5 * torch.log(torch.tensor(2 * torch.pi)))


def test_event_dims_come_from_the_argument_then_the_model_then_the_data():
    x = torch.zeros(4, 1, 8, 8)

    class Net(torch.nn.Module):
        event_dims = 0

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Net()

    assert event_dims_of(x, 2, Net()) == 2
    assert event_dims_of(x, None, Net()) == 0  # a model's 0 is an answer, not "unknown"
    assert event_dims_of(x, None, Wrapper()) == 0  # a guidance wrapper's model
    assert event_dims_of(x) == 3


def test_only_ddpms_processes_are_the_identity():
    sched = continuous_schedule("cosine")
    assert GaussianForward(sched).is_identity and NoiseFreeForward(sched).is_identity
    assert not NeuralForward(sched, torch.nn.Identity()).is_identity
    assert not StraightForward(sched).is_identity


def test_a_scaled_transform_is_not_converted_to_eps_as_if_it_were_the_identity():
    """eps_hat = (z - alpha F(x_hat, t)) / sigma for any F that is not the identity (StraightForward included)."""
    sched = continuous_schedule("cosine")
    process = StraightForward(sched)
    net = lambda z, t, y=None: 0.3 * z  # noqa: E731  an x0 predictor
    model = Denoiser(net, process, prediction="x0")
    z, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.4, dtype=torch.float64)
    alpha, sigma = sched.alpha(t)[:, None], sched.sigma(t)[:, None]
    expected = (z - alpha * process.transform(0.3 * z, t)) / sigma
    torch.testing.assert_close(model.eps(z, t), expected)
    (f, df), = transform_with_velocity(process, [(z, t)])
    assert df.abs().sum() > 0  # not the identity's zero velocity
