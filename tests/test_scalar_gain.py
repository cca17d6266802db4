"""The learned-schedule control of chapters 4 and 5: F(x, t) = (1 + t g(t)) x, at the identity before training."""

import torch
from diffusion_study.core.processes import NeuralForward
from diffusion_study.core.schedules import continuous_schedule
from diffusion_study.core.sde import transform_with_velocity
from diffusion_study.nets.transforms import ScalarGain


def _process(event_dims: int) -> NeuralForward:
    return NeuralForward(continuous_schedule("logsnr_cosine"), ScalarGain(event_dims=event_dims))


def test_the_control_starts_at_the_identity():
    x, t = torch.randn(5, 1, 8, 8), torch.rand(5, dtype=torch.float64)
    assert torch.equal(_process(3).transform(x, t), x)


def test_the_control_only_rescales_each_example_by_a_factor_of_t():
    process = _process(1)
    with torch.no_grad():
        for p in process.net.parameters():
            p.normal_()
    x, t = torch.randn(6, 2), torch.full((6,), 0.4, dtype=torch.float64)
    f = process.transform(x, t)
    ratio = f / x
    assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio), atol=1e-5)  # one factor for every point at one t
    assert not torch.allclose(f, x)  # and it moves once g is not zero
    (f2, df), = transform_with_velocity(process, [(x, t)])
    assert torch.allclose(f2, f) and df.shape == x.shape
