"""The toy-study grid (chapter 2): the pairing is an exact bijection, the one-program grid trains and
samples every member exactly as a standalone model of its configuration would, undefined cells and
bad parameters are refused."""

import math

import pytest
import torch
from diffusion_study.base import rng
from diffusion_study.core.denoiser import Denoiser
from diffusion_study.core.objectives import sample_time, simple_loss
from diffusion_study.core.predictions import target
from diffusion_study.core.processes import NoiseFreeForward
from diffusion_study.core.samplers import ddim_sample, ddpm_sample
from diffusion_study.core.schedules import discrete_schedule
from diffusion_study.data.toy2d import toy_split, two_gaussians
from diffusion_study.eval.stats import threshold_sensitivity
from diffusion_study.studies.toy_grid import (
    GaussianisingMap,
    GridSpec,
    PairingForward,
    ToyGrid,
    beats_trivial,
    compare,
    ensemble_forward,
    gaussian_fit_energy,
    held_out_bound,
    is_defined,
    ratio_parts,
    sampler_applies,
    sub_ensemble,
    summarise,
    time_features,
    training_steps,
)

MIX = two_gaussians()
PAIRING = GaussianisingMap(MIX)


def small_grid(seeds=2, T=25, clip=(-6.0, 6.0), **factors) -> ToyGrid:
    spec = GridSpec(seeds=seeds, T=T, **factors)
    return ToyGrid(spec, PAIRING, hidden=8, time_dim=8, generator=torch.Generator().manual_seed(0), clip=clip)


# --------------------------------------------------------------------------- the pairing


def test_pairing_is_a_bijection_that_recovers_every_training_point():
    train, _ = toy_split("two_gaussians", 10_000, 1, seed=0)
    u = PAIRING(train)
    assert torch.isfinite(u).all()
    assert (PAIRING.inverse(u) - train.double()).abs().max() < 1e-6
    # and the other way round, far into both tails of the Gaussian side
    grid = torch.linspace(-8, 8, 161, dtype=torch.float64)
    u = torch.stack(torch.meshgrid(grid, grid[:3], indexing="ij"), -1).reshape(-1, 2)
    assert (PAIRING(PAIRING.inverse(u)) - u).abs().max() < 1e-6


def test_pairing_maps_the_mixture_to_a_standard_gaussian():
    from scipy import stats

    x = MIX.sample(40_000, torch.Generator().manual_seed(1))
    u = PAIRING(x)
    for d in range(2):
        assert stats.kstest(u[:, d].numpy(), "norm").pvalue > 1e-3
    cov = torch.cov(u.T)
    torch.testing.assert_close(cov, torch.eye(2, dtype=torch.float64), atol=0.03, rtol=0)
    # monotone in x1: the map is order-preserving, so no two points swap
    x1 = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    u1 = PAIRING(torch.stack([x1, torch.zeros_like(x1)], -1))[:, 0]
    assert (torch.diff(u1) > 0).all()


def test_pairing_refuses_mixtures_it_cannot_gaussianise():
    from diffusion_study.data.toy2d import GaussianMixture

    tilted = GaussianMixture(torch.tensor([0.5, 0.5], dtype=torch.float64),
                             torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64),
                             0.25 * torch.eye(2, dtype=torch.float64).expand(2, 2, 2).clone())
    with pytest.raises(ValueError, match="differ only along x1"):
        GaussianisingMap(tilted)


def test_pairing_process_is_deterministic_and_its_ancestral_sampler_is_ddim():
    process = PairingForward(discrete_schedule("cosine", 30), PAIRING)
    x = MIX.sample(64, torch.Generator().manual_seed(2))
    t = torch.full((64,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(process.sample(x, t, torch.randn(64, 2)), process.sample(x, t, torch.zeros(64, 2)))
    c = process.step_coefficients(torch.tensor(0.4), torch.tensor(0.5), eta=1.0)
    assert c.var == 0 and c.posterior_var == 0  # a point-mass posterior
    model = Denoiser(small_grid().net.member(0), process, "eps")
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    grid = process.schedule.grid()
    torch.testing.assert_close(ddpm_sample(model, z, grid, generator=torch.Generator().manual_seed(4)),
                               ddim_sample(model, z, grid))


# --------------------------------------------------------------------------- the grid


def test_undefined_cells_are_left_out_and_said_so():
    assert not is_defined("noise_free", "eps") and not is_defined("noise_free", "score")
    assert is_defined("noise_free", "x0") and is_defined("pairing", "score")
    assert not sampler_applies("pairing", "ancestral") and sampler_applies("stochastic", "ancestral")
    spec = GridSpec(seeds=5)
    assert len(spec.configs) == 2 * (4 + 2 + 4) and len(spec.members) == 100
    assert len(spec.runs()) == 2 * 4 * 2 + 2 * 2 + 2 * 4  # ancestral only for the stochastic process
    with pytest.raises(ValueError, match="has no noise"):
        Denoiser(small_grid().net.member(0), NoiseFreeForward(discrete_schedule("cosine", 20)), "eps")


@pytest.mark.parametrize("bad, message", [
    ({"processes": ["stochastic", "bogus"]}, "unknown process 'bogus'; valid choices: 'stochastic', 'noise_free', 'pairing'"),
    ({"schedules": ["quadratic"]}, "unknown schedule 'quadratic'; valid choices: 'linear', 'cosine'"),
    ({"targets": ["v"]}, "unknown target 'v'; valid choices: 'eps', 'x0', 'prev', 'score'"),
    ({"samplers": ["euler"]}, "unknown sampler 'euler'; valid choices: 'ancestral', 'ddim'"),
    ({"seeds": 0}, "seeds must be a positive integer, got 0"),
    ({"T": -5}, "T must be a positive integer"),
    ({"processes": ["noise_free"], "targets": ["eps"]}, "no defined configuration"),
    ({"processes": "stochastic"}, "must be a non-empty list"),
])
def test_bad_parameters_stop_at_once_naming_the_parameter_and_its_valid_values(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        GridSpec(**bad)


def test_training_steps_are_epochs_over_batches():
    assert training_steps(50, 10_000, 64) == 7813  # the paper's protocol, about 7,800 steps
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        training_steps(0, 10_000, 64)


def test_members_are_ordered_target_major_with_adjacent_seeds():
    spec = GridSpec(seeds=3, T=10)
    slices = dict(spec.target_slices())
    for g, (config, seed) in enumerate(spec.members):
        assert slices[config.target].start <= g < slices[config.target].stop
        assert spec.member_index(config).start + seed == g


def test_fast_ensemble_forward_equals_the_ensemble():
    grid = small_grid()
    net, G = grid.net, grid.members
    z, index = torch.randn(G, 7, 2), torch.randint(0, 26, (G, 7))
    time = (index.double() / 25).float()
    torch.testing.assert_close(grid.network(z, index), net(z, time), atol=1e-5, rtol=1e-5)
    one = torch.tensor(13 / 25, dtype=torch.float64).float()
    torch.testing.assert_close(ensemble_forward(net, z, time_features(25, 8)[13].reshape(1, 1, -1)),
                               net(z, one.expand(G, 7)), atol=1e-5, rtol=1e-5)
    part = sub_ensemble(net, slice(3, 6))
    torch.testing.assert_close(part(z[3:6], time[3:6]), net(z, time)[3:6])


def _standalone(grid: ToyGrid, g: int) -> Denoiser:
    config, _ = grid.spec.members[g]
    return Denoiser(grid.net.member(g), grid.process_of(g), config.target, clip=grid.clip)


def test_grid_loss_of_each_member_is_simple_loss_of_a_standalone_denoiser():
    """Member g of the one-program loss equals objectives.simple_loss of a standalone Denoiser with
    g's network, process and target on the same times and noise (the pairing members, whose noise is
    G(x) and which simple_loss cannot be handed, against the Denoiser's output and predictions.target)."""
    grid = small_grid(T=50)
    G, B = grid.members, 16
    x = MIX.sample(G * B, torch.Generator().manual_seed(5)).reshape(G, B, 2)
    paired = PAIRING(x).float()
    index, eps = torch.zeros(G, B, dtype=torch.long), torch.zeros(G, B, 2)
    expected = torch.zeros(G, B)
    for g in range(G):
        model = _standalone(grid, g)
        gen = torch.Generator().manual_seed(100 + g)
        state = gen.get_state()
        t = sample_time(model.process.schedule, (B,), x[g], gen)  # simple_loss's own draws, in its order
        eps[g] = rng.randn((B, 2), x[g], gen)
        index[g] = (t * 50).round().long()
        if isinstance(model.process, PairingForward):
            z = model.process.sample(x[g], t)
            goal = target(model.prediction, x[g], paired[g], *model.scales(t, x[g]))
            expected[g] = (model.output(z, t) - goal).pow(2).mean(-1)
        else:
            gen.set_state(state)
            expected[g] = simple_loss(model, x[g], generator=gen)
    got = grid.loss_terms(x, paired, index, eps)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_grid_sampler_is_ddim_sample_of_each_member():
    grid = small_grid(T=25)
    G, N = grid.members, 32
    z = torch.randn(G, 1, N, 2, generator=torch.Generator().manual_seed(6))
    x, trace = grid.sample(z, [0.0], record_every=5, record_points=4)
    assert trace.shape == (6, G, 1, 4, 2)
    torch.testing.assert_close(trace[-1], x[:, :, :4])
    for g in range(G):
        model = _standalone(grid, g)
        torch.testing.assert_close(x[g, 0], ddim_sample(model, z[g, 0], model.process.schedule.grid()),
                                   rtol=1e-4, atol=1e-4)


def test_ancestral_grid_sampler_is_ddpm_sample_with_the_same_draws():
    grid = small_grid(seeds=1, processes=["stochastic"], schedules=["linear"], targets=["eps"])
    z = torch.randn(1, 1, 32, 2, generator=torch.Generator().manual_seed(7))
    x, _ = grid.sample(z, [1.0], generator=torch.Generator().manual_seed(8))
    model = _standalone(grid, 0)
    expected = ddpm_sample(model, z[0, 0], model.process.schedule.grid(), generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(x[0, 0], expected, rtol=1e-4, atol=1e-4)


def test_held_out_bound_is_defined_for_the_stochastic_process_only():
    grid = small_grid(T=25)
    test = MIX.sample(20, torch.Generator().manual_seed(9))
    stochastic = next(c for c in grid.spec.configs if c.process == "stochastic")
    bound = held_out_bound(grid, test, stochastic)
    assert bound.shape == (2,) and torch.isfinite(bound).all()
    for process in ("noise_free", "pairing"):
        config = next(c for c in grid.spec.configs if c.process == process)
        with pytest.raises(ValueError, match="infinite"):
            held_out_bound(grid, test, config)


# --------------------------------------------------------------------------- summaries and verdicts


def test_summaries_give_t_intervals_per_configuration_and_sampler():
    spec = GridSpec(seeds=3, T=10, processes=["stochastic", "pairing"], targets=["eps"], schedules=["cosine"])
    values = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [4.0, 40.0], [4.0, 40.0]])
    rows = summarise(spec, values)
    assert [(r["process"], r["sampler"]) for r in rows] == [("stochastic", "ancestral"), ("stochastic", "ddim"),
                                                            ("pairing", "ddim")]
    assert rows[0]["mean"] == 2.0 and rows[0]["low"] < 2.0 < rows[0]["high"]
    assert rows[2]["low"] == rows[2]["high"] == 40.0


def test_a_verdict_can_come_out_either_way_and_moves_with_its_threshold():
    big, small = [1.0, 1.1, 0.9, 1.05, 0.95], [0.1, 0.12, 0.08, 0.11, 0.09]
    assert compare(big, small, 0.5)["verdict"] == "supported"
    assert compare(small, big, 0.5)["verdict"] == "contradicted"
    assert compare(big, small, 0.9)["verdict"] == "inconclusive"
    moves = threshold_sensitivity(lambda tau: compare(big, small, tau)["verdict"], 0.5)
    assert moves == {"x0.5": "supported", "x1": "supported", "x2": "contradicted"}


def test_a_comparison_states_the_smallest_effect_it_could_detect():
    noisy = compare([0.0, 2.0, -2.0], [0.0, 1.0, -1.0], 0.5)
    quiet = compare([0.0, 0.2, -0.2], [0.0, 0.1, -0.1], 0.5)
    assert (noisy["verdict"], quiet["verdict"]) == ("inconclusive", "contradicted")  # the same effect, decided only when quiet
    assert noisy["mde"] > 5 * quiet["mde"] > 0  # ten times the spread: ten times the detectable effect
    row, = ratio_parts({"linear/x0": compare([3.0, 3.1, 2.9], [0.0, 0.1, -0.1], 0.69)}, "energy distance")
    assert row["verdict"] == "supported" and row["effect"].startswith("energy distance ×20.1")
    assert row["interval"][0] < 20.1 < row["interval"][1] and row["mde"].startswith("×")


def test_a_baseline_works_when_it_beats_a_gaussian_fit_by_the_factor():
    assert beats_trivial([math.log(0.1)] * 3, trivial_energy=0.3, log_ratio=math.log(2))
    assert not beats_trivial([math.log(0.2)] * 3, trivial_energy=0.3, log_ratio=math.log(2))
    x_train, x_test = toy_split("two_gaussians", 2000, 1000, seed=0)
    gauss = gaussian_fit_energy(x_train, x_test, 500)
    same = gaussian_fit_energy(x_test[:500], x_test[500:], 500)  # a Gaussian fit to held-out data: no better
    assert gauss > 0.05 and same > 0.05  # the two modes are what a Gaussian misses
