"""bench.results.stats on synthetic data whose answer is known."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.core.errors import BenchError  # noqa: E402
from bench.results.ranks import critical_difference_plot, friedman_nemenyi  # noqa: E402
from bench.results.stats import (  # noqa: E402
    bootstrap_interval,
    holm,
    paired_test,
    rank_column,
    t_interval,
)


def _correct(rng, p):
    """Per-example accuracy contributions (100 if correct else 0) for per-example probabilities p."""
    return (rng.random(np.shape(p)) < p) * 100.0


# --- bootstrap_interval ---------------------------------------------------------------------------------------


def test_bootstrap_covers_true_mean_at_nominal_rate():
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(200):
        low, high = bootstrap_interval(_correct(rng, np.full(300, 0.7)), level=0.95, seed=i)
        hits += low <= 70.0 <= high
    assert 0.90 <= hits / 200 <= 0.99


def test_bootstrap_narrower_for_more_examples():
    rng = np.random.default_rng(2)
    small = bootstrap_interval(_correct(rng, np.full(200, 0.7)))
    large = bootstrap_interval(_correct(rng, np.full(5000, 0.7)))
    assert large[1] - large[0] < 0.5 * (small[1] - small[0])  # width ~ 1/sqrt(n): factor 5 expected


def test_bootstrap_constant_seeded_and_bad_input():
    assert bootstrap_interval(np.full(50, 42.0)) == (42.0, 42.0)
    assert bootstrap_interval([7.0]) == (7.0, 7.0)
    x = _correct(np.random.default_rng(3), np.full(400, 0.6))
    assert bootstrap_interval(x, seed=5) == bootstrap_interval(x, seed=5)
    low, high = bootstrap_interval(x, seed=5)
    assert low < x.mean() < high
    with pytest.raises(ValueError):
        bootstrap_interval([])
    with pytest.raises(ValueError):
        bootstrap_interval(x, resamples=999)


def test_bootstrap_falls_back_to_percentile_when_bca_is_nan(monkeypatch):
    import bench.results.stats as module

    real = module.stats.bootstrap
    methods = []

    def fake(data, statistic, **kwargs):  # BCa made degenerate on purpose: NaN bounds, as scipy gives
        methods.append(kwargs["method"])
        result = real(data, statistic, **kwargs)
        if kwargs["method"] == "BCa":
            result.confidence_interval = type(result.confidence_interval)(math.nan, math.nan)
        return result

    monkeypatch.setattr(module.stats, "bootstrap", fake)
    x = _correct(np.random.default_rng(4), np.full(300, 0.7))
    low, high = bootstrap_interval(x)
    assert methods == ["BCa", "percentile"]
    assert math.isfinite(low) and low < x.mean() < high


# --- t_interval -----------------------------------------------------------------------------------------------


def test_t_interval_matches_hand_computation():
    # mean 2, s = 1, n = 3, t_{0.975, 2} = 4.302653 (tables): half-width 4.302653 / sqrt(3) = 2.484138
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 2.484138, abs=1e-5)
    assert high == pytest.approx(2 + 2.484138, abs=1e-5)
    assert t_interval([5.0]) is None
    assert t_interval([]) is None
    assert t_interval([3.0, 3.0, 3.0]) == (3.0, 3.0)


# --- paired_test ----------------------------------------------------------------------------------------------


def test_paired_test_false_positive_rate_near_nominal():
    rng = np.random.default_rng(10)
    rejections = 0
    for i in range(200):
        p = rng.uniform(0.3, 0.95, 300)  # per-example difficulty, shared by both methods
        rejections += paired_test([_correct(rng, p)], [_correct(rng, p)], resamples=2000, seed=i) < 0.05
    assert rejections / 200 <= 0.08


def test_paired_test_detects_clear_shift():
    rng = np.random.default_rng(11)
    detected = 0
    for i in range(20):
        p = rng.uniform(0.5, 0.85, 872)
        detected += paired_test([_correct(rng, p)], [_correct(rng, p + 0.10)], resamples=2000, seed=i) < 0.01
    assert detected >= 19


def test_paired_test_pools_seeds():
    rng = np.random.default_rng(12)
    one, three = [], []
    for i in range(10):
        p = rng.uniform(0.5, 0.9, 872)
        a = [_correct(rng, p) for _ in range(3)]
        b = [_correct(rng, p + 0.03) for _ in range(3)]
        one.append(paired_test(a[:1], b[:1], resamples=2000, seed=i))
        three.append(paired_test(a, b, resamples=2000, seed=i))
    assert np.median(three) < np.median(one)
    assert np.median(three) < 0.05


def test_paired_test_identical_and_mismatched():
    x = _correct(np.random.default_rng(13), np.full(100, 0.5))
    assert paired_test([x, x], [x.copy(), x.copy()]) == 1.0
    with pytest.raises(ValueError):
        paired_test([x], [x[:-1]])
    with pytest.raises(ValueError):
        paired_test([x, x], [x])


def test_paired_test_is_symmetric_and_seeded():
    rng = np.random.default_rng(14)
    a, b = _correct(rng, np.full(200, 0.7)), _correct(rng, np.full(200, 0.6))
    assert paired_test([a], [b], seed=3) == paired_test([a], [b], seed=3)
    assert paired_test([a], [b], seed=3) == pytest.approx(paired_test([b], [a], seed=3), abs=0.02)


# --- holm -----------------------------------------------------------------------------------------------------


def test_holm_matches_hand_computation():
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06; returned in the given order
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


# --- rank_column ----------------------------------------------------------------------------------------------


def _column(probs, n=872, seeds=3, seed=20):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 0.1, n)
    return {m: [_correct(rng, base + p) for _ in range(seeds)] for m, p in probs.items()}


def test_rank_column_clear_winner():
    frame = rank_column(_column({"a": 0.6, "b": 0.85, "c": 0.7}), resamples=2000)
    assert list(frame["method"]) == ["b", "c", "a"]
    assert list(frame["mark"]) == ["best", "", ""]
    assert math.isnan(frame["p_vs_best"].iloc[0])
    assert (frame["p_vs_best"].iloc[1:] < 0.05).all()
    assert list(frame.columns) == ["method", "mean", "p_vs_best", "mark"]


def test_rank_column_two_indistinguishable_best():
    frame = rank_column(_column({"a": 0.8, "b": 0.8, "c": 0.5}), resamples=2000).set_index("method")
    assert frame.loc["a", "mark"] == "tie" and frame.loc["b", "mark"] == "tie"
    assert frame.loc["c", "mark"] == ""


def test_rank_column_direction_and_single_method():
    scores = _column({"a": 0.6, "b": 0.85, "c": 0.7})
    frame = rank_column(scores, greater_is_better=False, resamples=2000)
    assert list(frame["method"]) == ["a", "c", "b"]
    assert list(frame["mark"]) == ["best", "", ""]
    single = rank_column({"a": scores["a"]})
    assert list(single["mark"]) == [""] and math.isnan(single["p_vs_best"].iloc[0])
    with pytest.raises(BenchError):
        rank_column({})


def test_rank_column_uses_shared_seeds_only():
    scores = _column({"a": 0.6, "b": 0.85})
    scores["a"] = scores["a"] + [np.full(872, 100.0)]  # an extra seed of a that b lacks: ignored
    frame = rank_column(scores, resamples=2000).set_index("method")
    assert frame.loc["a", "mean"] == pytest.approx(np.concatenate(scores["a"][:3]).mean())


# --- friedman_nemenyi -----------------------------------------------------------------------------------------


def _blocks(n_blocks=6, seed=30):
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 80, (n_blocks, 1))
    values = base + np.column_stack([np.full(n_blocks, 10.0), rng.uniform(0, 5, n_blocks), rng.uniform(0, 5, n_blocks)])
    return pd.DataFrame(values, index=[f"task{i}@0.9" for i in range(n_blocks)], columns=["best", "x", "y"])


def test_friedman_nemenyi_always_best_has_rank_one():
    table = _blocks()
    result = friedman_nemenyi(table)
    assert result["mean_ranks"]["best"] == 1.0
    assert result["mean_ranks"].index[0] == "best"
    assert result["mean_ranks"].sum() == pytest.approx(6.0)  # 1 + 2 + 3 per block, averaged
    assert result["friedman_p"] < 0.05
    assert result["nemenyi"].shape == (3, 3)
    flipped = friedman_nemenyi(table, greater_is_better=False)
    assert flipped["mean_ranks"]["best"] == 3.0


def test_friedman_nemenyi_needs_three_blocks_and_two_methods():
    table = _blocks()
    with pytest.raises(BenchError, match="3"):
        friedman_nemenyi(table.iloc[:2])
    nan_rows = table.copy()
    nan_rows.iloc[:4, 1] = np.nan  # 4 incomplete rows dropped: 2 left
    with pytest.raises(BenchError):
        friedman_nemenyi(nan_rows)
    with pytest.raises(BenchError, match="methods"):
        friedman_nemenyi(table[["best"]])
    two = friedman_nemenyi(table[["best", "x"]])
    assert math.isnan(two["friedman_p"]) and two["mean_ranks"]["best"] == 1.0


@pytest.mark.parametrize("n_blocks", [6, 14])
def test_critical_difference_matches_demsar_table(n_blocks):
    # Demsar (2006), table 5a: q_0.05 = 2.343 for k = 3
    result = friedman_nemenyi(_blocks(n_blocks))
    assert result["critical_difference"] == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * n_blocks)), rel=1e-3)


def test_critical_difference_plot_draws():
    result = friedman_nemenyi(_blocks())
    fig, ax = plt.subplots()
    try:
        assert critical_difference_plot(result, ax) is ax
        assert ax.texts  # method labels were drawn
    finally:
        plt.close(fig)
