"""Sample metrics against cases with known answers, and intervals against scipy."""

import math

import numpy as np
import pytest
import torch
from diffusion_study.data.toy2d import two_gaussians
from diffusion_study.eval import metrics as m

MIX = two_gaussians()


def draw(n, seed, mixture=MIX):
    return mixture.sample(n, torch.Generator().manual_seed(seed))


def test_energy_distance_is_unchanged_and_chunks_agree():
    x, y = draw(300, 0), draw(300, 1)
    assert isinstance(m.energy_distance(x, y), float)
    batch = torch.stack([draw(200, s) for s in range(5)]).reshape(5, 1, 200, 2)
    torch.testing.assert_close(m.energy_distance(batch, y, chunk=2), m.energy_distance(batch, y))
    assert m.energy_distance(x + 3.0, y) > 10 * m.energy_distance(x, y)


def test_sliced_wasserstein_is_pots_with_the_same_projections():
    import ot

    x, y = torch.stack([draw(400, 2), draw(400, 3) + 1.0]), draw(400, 4)
    ours = m.sliced_wasserstein(x, y, n_projections=64, seed=5)
    pots = [ot.sliced_wasserstein_distance(s.double().numpy(), y.double().numpy(), n_projections=64, seed=5)
            for s in x]
    torch.testing.assert_close(ours, torch.tensor(pots, dtype=torch.float64))
    uneven = m.sliced_wasserstein(x[:, :300], y, n_projections=64, seed=5)  # N != M: POT per sample
    assert uneven.shape == (2,) and uneven[1] > 3 * uneven[0]
    # a pure shift by d along every projection: SW_2 = |d| sqrt(E cos^2) = |d| / sqrt(2) in 2D
    shift = m.sliced_wasserstein(y + torch.tensor([1.0, 0.0]), y, n_projections=4000, seed=0)
    assert abs(shift - 1 / math.sqrt(2)) < 0.02


def test_mode_weight_error_is_the_total_variation_of_mode_fractions():
    lopsided = two_gaussians(weights=(0.2, 0.8))
    assert m.mode_weight_error(MIX, draw(20_000, 6, lopsided)) == pytest.approx(0.3, abs=0.01)
    assert m.mode_weight_error(MIX, draw(20_000, 7)) < 0.01


def test_precision_is_minus_the_entropy_for_the_mixtures_own_samples():
    x = draw(20_000, 8)
    entropy = -MIX.log_prob(draw(200_000, 9).double()).mean()
    assert m.mean_log_density(MIX, x) == pytest.approx(-float(entropy), abs=0.03)
    assert m.mean_log_density(MIX, 0.5 * x) < m.mean_log_density(MIX, x) - 0.5
    inf = torch.full((1, 2), math.inf)
    assert m.mean_log_density(MIX, torch.cat([x[:9], inf])) == -math.inf


def test_low_density_share_and_mean_distance_have_the_datas_values_on_data():
    held_out, x = draw(20_000, 10), draw(20_000, 11)
    level = float(torch.quantile(MIX.log_prob(held_out.double()), 0.05))
    assert m.low_density_share(MIX, x, level) == pytest.approx(0.05, abs=0.006)
    assert m.nearest_mean_distance(MIX, x) == pytest.approx(0.5 * math.sqrt(math.pi / 2), abs=0.01)
    collapsed = MIX.means[torch.arange(100) % 2].float()
    assert m.nearest_mean_distance(MIX, collapsed) == 0 and m.low_density_share(MIX, collapsed, level) == 0


def test_memorisation_share_is_q_for_fresh_samples_and_one_for_copies():
    train, held_out = draw(5000, 12), draw(2000, 13)
    fresh, copies = draw(2000, 14), train[:2000]
    share = m.memorisation_share(torch.stack([fresh, copies]), train, held_out, quantile=0.1)
    assert share[0] == pytest.approx(0.1, abs=0.03) and share[1] == 1.0


def test_recovery_of_the_training_points_themselves_is_exact():
    train = draw(3000, 15)
    error, share = m.recovery(torch.stack([train[:500], train[:500] + 1.0]), train[:500], train)
    assert error[0] == 0 and share[0] == 1
    assert error[1] == pytest.approx(math.sqrt(2)) and share[1] < 0.05


def test_start_end_correlation_detects_kept_positions():
    start = torch.randn(2, 5000, 2, generator=torch.Generator().manual_seed(16))
    end = torch.stack([0.5 * start[0] + 1.0, torch.randn(5000, 2, generator=torch.Generator().manual_seed(17))])
    corr = m.start_end_correlation(start, end)
    assert corr[0] == pytest.approx(1.0) and abs(corr[1]) < 0.05


def test_field_errors_of_exact_opposite_and_scaled_fields():
    z = draw(500, 18).double()
    score = MIX.score(z)
    rel, cos = m.field_errors(torch.stack([score, -score, 2 * score]), score)
    torch.testing.assert_close(rel, torch.tensor([0.0, 4.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(cos, torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))


def test_t_interval_and_welch_interval_are_scipys():
    from scipy import stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 5), rng.normal(0.0, 3.0, 7)
    mean, low, high = m.t_interval(a)
    ref = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    assert (low, high) == pytest.approx(ref) and mean == pytest.approx(a.mean())
    diff, low, high = m.welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(a.mean() - b.mean()) and (low, high) == pytest.approx((ci.low, ci.high))
    rows = m.t_interval(np.stack([a, a + 1]))
    assert rows[0].shape == (2,)
    assert np.isnan(m.t_interval([1.0])[1])


def test_rank_correlation_interval_separates_monotone_from_independent():
    rng = np.random.default_rng(1)
    a = rng.normal(size=40)
    rho, low, high = m.rank_correlation_interval(a, np.exp(a))
    assert rho == pytest.approx(1.0) and low > 0.99
    rho, low, high = m.rank_correlation_interval(a, rng.normal(size=40))
    assert low < 0 < high
