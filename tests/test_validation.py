"""Bad input gets a ValueError that names the valid choices."""

import pytest
import torch
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import DiscretizedGaussianDecoder, reverse_variance
from diffusion_study.core.processes import GaussianForward, NeuralForward
from diffusion_study.core.schedules import continuous_schedule, discrete_schedule
from diffusion_study.data.toy2d import toy_dataset


@pytest.mark.parametrize("build", [lambda: discrete_schedule("quadratic", 10), lambda: continuous_schedule("sigmoid")])
def test_unknown_schedule(build):
    with pytest.raises(ValueError, match="unknown schedule .*_linear', 'cosine', 'logsnr_cosine'"):
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
    from diffusion_study.data.toy2d import toy_split

    a_train, a_test = toy_split("two_moons", 500, 100, seed=3)
    b_train, b_test = toy_split("two_moons", 500, 100, seed=3)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    assert a_train.shape == (500, 2) and a_test.shape == (100, 2)
    assert not torch.equal(a_train[:100], a_test)


def test_checkerboard_points_lie_on_dark_squares_only():
    from diffusion_study.data.toy2d import checkerboard

    x = checkerboard(5000, torch.Generator().manual_seed(0), squares=4, scale=2.0)
    cells = torch.floor((x + 2.0) / 1.0).long()
    assert ((cells >= 0) & (cells < 4)).all()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    assert len({tuple(c) for c in cells.tolist()}) == 8  # all 8 dark squares are used


@pytest.mark.parametrize("value", ["abc", None, float("nan"), float("inf"), 2.5, 0, -3, True, [3]])
def test_positive_int_names_the_parameter_for_every_bad_value(value):
    from diffusion_study.base.args import positive_int

    with pytest.raises(ValueError, match=r"^steps must be a positive integer, got "):
        positive_int("steps", value)


def test_positive_int_accepts_integral_values():
    from diffusion_study.base.args import positive_int

    assert positive_int("T", 3) == 3 and positive_int("T", 4.0) == 4 and positive_int("T", "5") == 5


def test_positive_int_accepts_numpy_and_torch_integers():
    import numpy as np
    from diffusion_study.base.args import positive_int

    assert positive_int("T", np.int64(7)) == 7 and positive_int("T", np.float64(3.0)) == 3
    assert positive_int("T", torch.tensor(5)) == 5
    with pytest.raises(ValueError):
        positive_int("T", np.bool_(True))


# ----------------------------------------------------------------------------- shapes and dtypes at entry points
# (issue 13, item 8): a wrong argument gets an error naming it and the expected shape or dtype, never
# an AssertionError with bare shapes or torch's "mat1 and mat2 must have the same dtype".

from diffusion_study.base.tensors import ShapeError, check_model_input
from diffusion_study.core.likelihood import bits_per_dim
from diffusion_study.core.objectives import GaussianDecoder, simple_loss, vlb_terms
from diffusion_study.core.samplers import (
    ancestral_sample,
    ddim_invert,
    ddim_sample,
    ddpm_sample,
)
from diffusion_study.nets.models import EnsembleMLP, TimeMLP, UNet, time_embedding


def _mlp_model(num_classes=0):
    return Denoiser(TimeMLP(2, 8, 1, 8, num_classes=num_classes), GaussianForward(discrete_schedule("cosine", 10)))


def _ensemble_model():
    return Denoiser(EnsembleMLP(3, 2, 8, 1, 8), GaussianForward(continuous_schedule("cosine")))


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda m: m(torch.randn(4, 2), torch.rand(3)), ShapeError,
     r"^Denoiser: t must be 0-dim \(one time for all\) or of the batch shape \[4\], got \[3\]$"),
    (lambda m: m(torch.randn(4, 3), torch.rand(4)), ShapeError,
     r"^TimeMLP: z must have shape \[B, 2\] \(batch B, 2 features\), got \[4, 3\]$"),
    (lambda m: m(torch.randn(4), torch.rand(4)), ShapeError, r"^Denoiser\(TimeMLP\): z must have shape \[B, 2\]"),
    (lambda m: m(torch.randn(4, 2, dtype=torch.float64), torch.rand(4)), TypeError,
     r"^TimeMLP: z is torch.float64 but the network's weights are torch.float32; pass z.to\(torch.float32\)"),
    (lambda m: m(torch.ones(4, 2, dtype=torch.long), torch.rand(4)), TypeError,
     r"^Denoiser: z must be a floating-point tensor \(float32 or float64\), got torch.int64; convert it with z.float"),
    (lambda m: m(torch.randn(4, 2).numpy(), torch.rand(4)), TypeError,
     r"^Denoiser: z must be a torch.Tensor, got ndarray"),
    (lambda m: m.eps(torch.randn(4, 2), torch.rand(3)), ShapeError, r"^Denoiser: t must be 0-dim"),
], ids=["t-shape", "feature-dim", "no-batch-dim", "float64-into-float32", "integer-z", "numpy-z", "eps-t-shape"])
def test_denoiser_names_the_bad_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(_mlp_model())


def test_denoiser_accepts_a_0dim_time_and_the_batch_shape():
    model = _ensemble_model()
    z = torch.randn(3, 4, 2)
    assert model(z, torch.tensor(0.5)).shape == z.shape
    assert model(z, torch.rand(3, 4)).shape == z.shape
    with pytest.raises(ShapeError, match=r"batch shape \[3, 4\], got \[4, 3\]"):
        model(z, torch.rand(4, 3))


@pytest.mark.parametrize(("net", "z", "t", "error", "message"), [
    (TimeMLP(2, 8, 1, 8), torch.randn(4, 3), torch.rand(4), ShapeError, r"TimeMLP: z must have shape \[B, 2\]"),
    (TimeMLP(2, 8, 1, 8), torch.randn(4, 2), torch.rand(4, 1), ShapeError,
     r"TimeMLP: t must have z's batch shape \[B\] = \[4\] \(one time per example\), got \[4, 1\]"),
    (EnsembleMLP(3, 2, 8, 1, 8), torch.randn(2, 4, 2), torch.rand(2, 4), ShapeError,
     r"EnsembleMLP: z must have shape \[3, B, 2\] \(3 members, batch B, 2 features\), got \[2, 4, 2\]"),
    (EnsembleMLP(3, 2, 8, 1, 8), torch.randn(3, 4, 2).double(), torch.rand(3, 4), TypeError,
     r"EnsembleMLP: z is torch.float64 but the network's weights are torch.float32; pass z.to\(torch.float32\)"),
    (UNet(1, base=8, mults=(1,)), torch.randn(2, 3, 8, 8), torch.rand(2), ShapeError,
     r"UNet: z must have shape \[B, 1, H, W\] \(batch B, 1 channels, height H, width W\), got \[2, 3, 8, 8\]"),
    (UNet(1, base=8, mults=(1,)), torch.randn(2, 1, 8, 8).double(), torch.rand(2), TypeError,
     r"UNet: z is torch.float64 but the network's weights are torch.float32"),
    (UNet(1, base=8, mults=(1,)), torch.ones(2, 1, 8, 8, dtype=torch.uint8), torch.rand(2), TypeError,
     r"UNet: z must be a floating-point tensor"),
], ids=["mlp-dim", "mlp-t", "ensemble-members", "ensemble-float64", "unet-channels", "unet-float64", "unet-uint8"])
def test_networks_name_the_bad_input(net, z, t, error, message):
    with pytest.raises(error, match=message):
        net(z, t)


def test_float64_networks_take_float64_input_and_labels_are_named():
    net = TimeMLP(2, 8, 1, 8, num_classes=3).double()
    assert net(torch.randn(4, 2, dtype=torch.float64), torch.rand(4)).dtype == torch.float64
    with pytest.raises(ShapeError, match=r"TimeMLP: labels y must have the batch shape \[4\], got \[5\]"):
        net(torch.randn(4, 2, dtype=torch.float64), torch.rand(4), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"time_embedding: t must have shape \[B\], got \[2, 2\]"):
        time_embedding(torch.rand(2, 2), 8)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda m: simple_loss(m, torch.randn(8, 3)), ShapeError, r"^simple_loss: x must have shape \[B, 2\]"),
    (lambda m: simple_loss(m, torch.randn(8, 2).double()), TypeError,
     r"^simple_loss: x is torch.float64 but the network's weights are torch.float32; pass x.to\(torch.float32\)"),
    (lambda m: simple_loss(m, torch.ones(8, 2, dtype=torch.long)), TypeError, r"^simple_loss: x must be a floating"),
    (lambda m: vlb_terms(m, torch.randn(8, 2).double(), decoder=GaussianDecoder()), TypeError,
     r"^vlb_terms: x is torch.float64 .*x.to\(torch.float32\)"),
    (lambda m: vlb_terms(m, torch.randn(8, 1), decoder=GaussianDecoder()), ShapeError,
     r"^vlb_terms: x must have shape \[B, 2\] \(batch B, 2 features\), got \[8, 1\]"),
    (lambda m: bits_per_dim(m, torch.randn(8, 5), decoder=GaussianDecoder()), ShapeError,
     r"^bits_per_dim: data must have shape \[B, 2\]"),
    (lambda m: ddim_sample(m, torch.randn(8, 3), m.process.schedule.grid(5)), ShapeError,
     r"^ddim_sample: x must have shape \[B, 2\] \(batch B, 2 features\), got \[8, 3\]"),
    (lambda m: ddpm_sample(m, torch.randn(8, 2).double(), m.process.schedule.grid(5)), TypeError,
     r"^ddpm_sample: x is torch.float64 .*pass x.to\(torch.float32\)"),
    (lambda m: ancestral_sample(m, torch.ones(8, 2, dtype=torch.long), m.process.schedule.grid(5)), TypeError,
     r"^ancestral_sample: x must be a floating-point tensor"),
    (lambda m: ddim_invert(m, torch.randn(8, 3), m.process.schedule.grid(5)), ShapeError,
     r"^ddim_invert: x must have shape \[B, 2\]"),
], ids=["loss-dim", "loss-float64", "loss-int", "vlb-float64", "vlb-dim", "bpd-dim", "ddim-dim", "ddpm-float64",
        "ancestral-int", "invert-dim"])
def test_entry_points_name_the_bad_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(_mlp_model())


def test_labels_are_checked_at_the_entry_points():
    model = _mlp_model(num_classes=3)
    with pytest.raises(ShapeError, match=r"^simple_loss: labels y must have the batch shape \[8\], got \[7\]"):
        simple_loss(model, torch.randn(8, 2), y=torch.zeros(7, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"^ddim_sample: labels y must have the batch shape \[8\], got \[8, 1\]"):
        ddim_sample(model, torch.randn(8, 2), model.process.schedule.grid(3),
                    {"y": torch.zeros(8, 1, dtype=torch.long)})


def test_guidance_wrappers_are_checked_through_to_their_network():
    from diffusion_study.core.guidance import ClassifierFreeGuidance

    guided = ClassifierFreeGuidance(_mlp_model(num_classes=3), 1.0)
    with pytest.raises(ShapeError, match=r"^ddim_sample: x must have shape \[B, 2\]"):
        ddim_sample(guided, torch.randn(8, 3), guided.process.schedule.grid(3), {"y": torch.zeros(8, dtype=torch.long)})


def test_samplers_check_once_before_the_loop_not_per_step(monkeypatch):
    from diffusion_study.core import samplers

    calls = []
    real = samplers.check_model_input
    monkeypatch.setattr(samplers, "check_model_input", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(Denoiser, "check_input", lambda *a, **k: pytest.fail("full check on a valid step"))
    for clip in (None, (-3, 3)):  # the fast path (network called directly) and the generic one (model(z, t))
        model = _mlp_model()
        model.clip = clip
        calls.clear()
        out = ddim_sample(model, torch.randn(8, 2), model.process.schedule.grid(10))
        assert out.shape == (8, 2) and calls == [1]


def test_entry_checks_read_shapes_and_dtypes_only():
    """On the meta device no value can be read: the checks pass without a host-device sync."""
    model = _ensemble_model().to("meta")
    check_model_input(model, torch.empty(3, 5, 2, device="meta"))
    model.check_input(torch.empty(3, 5, 2, device="meta"), torch.empty(3, 5, device="meta"))
    with pytest.raises(ShapeError, match=r"x must have shape \[3, B, 2\]"):
        check_model_input(model, torch.empty(2, 5, 2, device="meta"))
