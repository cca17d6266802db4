"""Intervals over seeds cover the truth at their nominal rate; verdict classes reach the ledger."""

import numpy as np
from diffusion_study.eval.stats import mean_interval, threshold_sensitivity


def test_t_interval_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    draws = rng.normal(1.0, 2.0, size=(4000, 5))  # 4000 experiments of 5 seeds
    covered = [abs(mean_interval(row).mean - 1.0) <= mean_interval(row).half_width for row in draws]
    assert 0.94 < np.mean(covered) < 0.96


def test_interval_of_one_seed_has_no_width_and_threshold_sensitivity_reports_each_scale():
    assert np.isnan(mean_interval([3.0]).half_width)
    verdicts = threshold_sensitivity(lambda th: "supported" if 0.3 < th else "not supported", 0.5)
    assert verdicts == {"x0.5": "not supported", "x1": "supported", "x2": "supported"}


def test_ledger_keeps_identities_apart(tmp_path):
    from diffusion_study.book.ledger import build_ledger
    from diffusion_study.book.results import write_result

    claims = {"L1": {"verdict": "verified identity", "evidence": "fig-a", "effect": "exact", "conditions": "T=10"},
              "L4": {"verdict": "mixed", "evidence": "fig-b", "effect": "0.1 +- 0.02", "conditions": "5 seeds"}}
    write_result(tmp_path / "ch", "ch", params={"profile": "cpu", "seed": 0}, metrics={}, claims=claims)
    page = build_ledger(tmp_path, "book/claims.yml")
    summary = page.split("\n\n")[2]
    assert "verdict-verified-identity" in summary and "verdict-mixed" in summary
