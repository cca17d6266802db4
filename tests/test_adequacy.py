"""eval.adequacy: the gates that turn a verdict on untrained models into "inadequate model"."""

import math

import pytest
from diffusion_study.eval.adequacy import INADEQUATE, adequate, all_adequate, gated

BASES = {"histogram": 2.437, "mixture of categoricals": 2.257}


def test_a_model_below_every_baseline_passes_and_the_reason_names_the_numbers():
    ok, reason = adequate([2.01, 2.02, 2.05], BASES, name="DDPM", unit="bits/dim")
    assert ok
    assert "DDPM 2.050 bits/dim (worst of 3 seeds) beats histogram 2.437, mixture of categoricals 2.257" == reason


def test_the_worst_seed_decides():
    ok, reason = adequate([2.0, 2.3], BASES, name="NDM")
    assert not ok
    assert "does not beat mixture of categoricals 2.257" in reason and "beats histogram 2.437" in reason


def test_the_margin_is_required():
    assert adequate(2.24, BASES)[0]
    ok, reason = adequate(2.24, BASES, margin=0.05)
    assert not ok and "by more than 0.050" in reason


def test_higher_is_better_scores():
    ok, _ = adequate([0.9, 0.95], {"Gaussian fit": 0.55}, lower_is_better=False)
    assert ok
    ok, reason = adequate([0.5, 0.95], {"Gaussian fit": 0.55}, lower_is_better=False, name="DDPM")
    assert not ok and reason.startswith("DDPM 0.500")


def test_non_finite_values_never_pass():
    assert not adequate([2.0, math.nan], BASES)[0]
    assert not adequate([math.inf], {"x": 1.0}, lower_is_better=False)[0]  # a non-finite score is no score
    assert not adequate([math.nan], {"x": 1.0}, lower_is_better=False)[0]


def test_all_models_must_pass():
    ok, reason = all_adequate({"DDPM": [2.0, 2.1], "NDM": [2.5, 2.6]}, BASES, unit="bits/dim")
    assert not ok
    assert reason.count(";") >= 1 and "NDM 2.600 bits/dim" in reason
    assert all_adequate({"DDPM": [2.0], "NDM": [2.1]}, BASES)[0]


def test_gated_verdicts():
    assert gated("supported", (True, "")) == "supported"
    assert gated("supported", (False, "why")) == INADEQUATE == "inadequate model"
    assert gated("mixed", False) == INADEQUATE


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        adequate(1.0, {})
    with pytest.raises(ValueError):
        adequate([], BASES)
    with pytest.raises(ValueError):
        all_adequate({}, BASES)
