"""Intervals, verdicts, the baseline row and significance-tested marks on the leaderboard, from a folder of
synthetic new-format records with per-example predictions (no model is trained here)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from bench.core.task import Evaluation
from bench.results import records
from bench.results.folder import ResultsFolder
from bench.results.leaderboard import board, collect, pivot, summarize
from bench.results.predictions import save_predictions
from bench.results.render import render_board
from bench.results.significance import critical_difference, load_arrays
from bench.results.stats import t_interval

N = 400  # eval examples
BASELINE = {"description": "majority class 1 ('great') of the eval split", "metrics": {"accuracy": 50.0},
            "intervals": {"accuracy": {"low": 45.0, "high": 55.0, "level": 0.95, "resamples": 2000}}}  # fmt: skip


def correct(rate: float, seed: int, salt: int = 0) -> np.ndarray:
    """Per-example accuracy contributions (0 or 100) with about ``rate`` right."""
    return 100.0 * (np.random.default_rng(1000 * salt + seed).random(N) < rate)


def new_record(method, sparsity, seed, values, task="sst2", chance=False, reached=None, ramp=None, min_ramp=0):
    """A finished record as the runner now writes it (methods are unregistered names, so verdicts are kept as
    recorded)."""
    target = sparsity
    fraction = None if reached is None else reached / target
    return {
        "id": f"{method}-{task}-{sparsity}-{seed}", "status": "finished", "primary_metric": "accuracy",
        "greater_is_better": True, "metrics": {"accuracy": float(values.mean())}, "method_info": {} if reached is None
        else {"sparsity_before_projection": reached},
        "cell": {"model": "tiny", "method": method, "task": {"name": task}, "budget": {}, "sparsity": sparsity,
                 "seed": seed},
        "sparsity": {"encoder_sparsity": sparsity, "remaining_params": 2e6, "total_params": 4e6},
        "metric_intervals": {"accuracy": {"low": float(values.mean()) - 4, "high": float(values.mean()) + 4,
                                          "level": 0.95, "resamples": 2000}},
        "baseline": BASELINE, "wall_seconds": 1.0,
        "verdicts": {"chance": chance, "constant_predictions": chance, "baseline_bound": 55.0,
                     "projection": fraction is not None and fraction < 0.8, "reached_fraction": fraction,
                     "reached_sparsity": reached, "target_sparsity": target,
                     "short_schedule": ramp is not None and ramp < min_ramp, "ramp_steps": ramp,
                     "min_ramp_steps": min_ramp},
    }  # fmt: skip


def write(folder, rec, values, predictions=True):
    records.write_record(folder, rec)
    if predictions:
        baseline = Evaluation({"accuracy": 50.0}, {"accuracy": np.full(N, 50.0)})
        save_predictions(ResultsFolder(folder).predictions(rec["id"]), Evaluation(rec["metrics"], {"accuracy": values}),
                         baseline)  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """sst2 @ 90%: strong (90%) beats weak (60%); lucky scores highest (95%) but is a chance row.
    sst2 @ 50%: twin_a and twin_b differ on 2 examples per seed, one each way. Dense at 92%. Three seeds each."""
    out = tmp_path_factory.mktemp("board") / "res"
    for seed in (0, 1, 2):
        rates = {("strong", 0.9): (0.9, 1), ("weak", 0.9): (0.6, 2), ("lucky", 0.9): (0.95, 3),
                 ("dense", 0.0): (0.92, 4)}  # fmt: skip
        for (method, sparsity), (rate, salt) in rates.items():
            values = correct(rate, seed, salt)
            write(out, new_record(method, sparsity, seed, values, chance=method == "lucky"), values)
        twin = correct(0.8, seed, 5)
        other = twin.copy()
        flip = [int(np.argmax(twin == 100.0)), int(np.argmax(twin == 0.0))]  # one gained, one lost: same mean
        other[flip] = 100.0 - other[flip]
        write(out, new_record("twin_a", 0.5, seed, twin, reached=0.1, ramp=44, min_ramp=2000), twin)
        write(out, new_record("twin_b", 0.5, seed, other), other)
    return out


@pytest.fixture(scope="module")
def ranked(folder):
    cells = collect(records.read_records(folder))
    return board(cells, load_arrays(folder, cells))


def row(b: pd.DataFrame, method: str) -> pd.Series:
    return b[b["method"] == method].iloc[0]


def test_a_clearly_better_method_is_best_and_a_chance_row_is_never_marked_even_with_the_highest_mean(ranked):
    assert row(ranked, "lucky")["mean"] > row(ranked, "strong")["mean"], "the chance row has the highest mean"
    assert row(ranked, "strong")["mark"] == "best" and row(ranked, "strong")["best"]
    assert row(ranked, "lucky")["mark"] == "" and not row(ranked, "lucky")["best"]
    assert row(ranked, "weak")["mark"] == "" and row(ranked, "weak")["p_vs_best"] < 0.05
    text = render_board(ranked, "md")
    lucky = next(line for line in text.splitlines() if "| lucky" in line)
    assert "chance" in lucky and "**" not in lucky and "≈" not in lucky
    assert text.count("**") == 2, "one bold value: strong's"


def test_two_indistinguishable_methods_are_both_tie_and_none_is_bold(ranked):
    assert row(ranked, "twin_a")["mark"] == row(ranked, "twin_b")["mark"] == "tie"
    assert not ranked[ranked["target_sparsity"] == 0.5]["best"].any()
    table = pivot(ranked)
    column = "sst2 accuracy↑ @ 50%"
    assert "≈" in table.loc["twin_a", column] and "≈" in table.loc["twin_b", column]
    assert "**" not in table.loc["twin_a", column] + table.loc["twin_b", column]
    assert table.loc["strong", "sst2 accuracy↑ @ 90%"].startswith("**")
    lucky = table.loc["lucky", "sst2 accuracy↑ @ 90%"]
    assert "**" not in lucky and "≈" not in lucky and "chance" in lucky


def test_intervals_are_t_over_seeds_and_n_is_shown(ranked, folder):
    cells = collect(records.read_records(folder))
    strong = cells[cells["method"] == "strong"].sort_values("seed")["value"].to_numpy()
    low, high = t_interval(strong)
    assert row(ranked, "strong")[["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    text = pivot(ranked).loc["strong", "sst2 accuracy↑ @ 90%"]
    assert f"[{low:.1f}, {high:.1f}]" in text and "n=3" in text
    one = summarize(cells[(cells["method"] == "weak") & (cells["seed"] == 0)])
    weak = one[one["method"] == "weak"].iloc[0]
    assert (weak["ci_low"], weak["ci_high"]) == pytest.approx((weak["mean"] - 4, weak["mean"] + 4)), (
        "one seed: the cell's own bootstrap interval"
    )


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [("md", "| sst2   | —          | baseline (majority class 1 ('great') of the eval split)"),
     ("latex", "baseline (majority class 1 ('great') of the eval split)"),
     ("html", "<td>baseline (majority class 1 (&#x27;great&#x27;) of the eval split)")],
)  # fmt: skip
def test_the_baseline_row_sits_under_dense_in_every_text_format(ranked, fmt, needle):
    text = render_board(ranked, fmt)
    assert needle in text and "50.00 [45.0, 55.0]" in text
    assert ranked["method"].tolist()[:2] == ["dense", "baseline"]
    assert "never ranked" in text, "the legend explains the baseline row"


def test_csv_has_numeric_intervals_verdicts_and_marks(ranked):
    frame = pd.read_csv(io.StringIO(render_board(ranked, "csv")))
    for column in ("ci_low", "ci_high", "chance", "projection", "reached_fraction", "short_schedule", "mark",
                   "p_vs_best", "best"):  # fmt: skip
        assert column in frame.columns, column
    base = frame[frame["method"] == "baseline"].iloc[0]
    assert (base["mean"], base["ci_low"], base["ci_high"]) == (50.0, 45.0, 55.0) and pd.isna(base["mark"])
    assert frame.loc[frame["method"] == "strong", "mark"].item() == "best"
    assert frame.loc[frame["method"] == "lucky", "chance"].item() == True  # noqa: E712 - CSV reads back a bool
    assert frame.loc[frame["method"] == "twin_a", "reached_fraction"].item() == pytest.approx(0.2)
    assert frame.loc[frame["method"] == "twin_a", ["projection", "short_schedule"]].all(axis=None)


def test_projection_and_short_schedule_rows_carry_footnote_marks_explained_in_the_legend(ranked):
    text = render_board(ranked, "md")
    twin_a = next(line for line in text.splitlines() if "| twin_a" in line)
    assert "≈†‡" in twin_a.replace(" ", "")
    assert "† the final projection did most of the pruning" in text
    assert "sst2 twin_a @ 50%: reached 10.0% of 50% itself" in text
    assert "‡ short schedule" in text and "sst2 twin_a @ 50%: 44 < 2000 steps" in text
    latex = render_board(ranked, "latex")
    assert "reached 10.0\\% of 50\\% itself" in latex, "LaTeX legend escapes %"


def test_chance_when_seeds_disagree_shows_the_count(tmp_path):
    out = tmp_path / "res"
    for seed, chance in ((0, True), (1, True), (2, False)):
        values = correct(0.7, seed)
        write(out, new_record("split", 0.9, seed, values, chance=chance), values)
    b = board(collect(records.read_records(out)))
    assert row(b, "split")["chance"] and row(b, "split")["chance_seeds"] == 2
    assert "chance 2/3" in render_board(b, "md")


def test_old_records_without_predictions_render_unmarked_and_the_legend_says_untested(tmp_path):
    from tests.test_leaderboard import RECORDS

    b = board(collect(RECORDS))
    assert not b["best"].any() and set(b["mark"]) == {""}, "no untested 'best'"
    text = render_board(b, "md")
    assert "71.00 [" in text and "**" not in text
    assert "Not tested, so nothing is marked: mnli @ 90% (no per-example predictions" in text


def test_a_column_where_one_method_lacks_predictions_is_not_tested(tmp_path):
    out = tmp_path / "res"
    for seed in (0, 1):
        good, bad = correct(0.9, seed, 1), correct(0.5, seed, 2)
        write(out, new_record("good", 0.9, seed, good), good)
        write(out, new_record("old", 0.9, seed, bad), bad, predictions=False)
    cells = collect(records.read_records(out))
    b = board(cells, load_arrays(out, cells))
    assert set(b["mark"]) == {""} and not b.loc[b["role"] == "pruned", "tested"].any()


def test_critical_difference_needs_three_columns(ranked, tmp_path):
    result, reason = critical_difference(ranked)
    assert result is None and "2 task@sparsity column(s)" in reason and "at least 3" in reason
    rows = [{"method": m, "task": "t", "target_sparsity": s, "metric": "accuracy", "greater_is_better": True,
             "role": "pruned", "mean": v + s} for s in (0.5, 0.7, 0.9) for m, v in (("a", 80), ("b", 70), ("c", 60))]
    result, reason = critical_difference(pd.DataFrame(rows))
    assert reason == "" and list(result["mean_ranks"].index) == ["a", "b", "c"] and result["n_blocks"] == 3


def test_leaderboard_md_follows_the_same_marks_with_the_baseline_row_and_legend(folder):
    from bench.results.leaderboard import write

    markdown = write(folder)
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines()[2:]}
    assert list(rows)[:2] == ["dense", "baseline"]
    assert "50.00 [45.0, 55.0] (majority class 1 ('great') of the eval split)" in rows["baseline"]
    assert "**" in rows["strong"] and "**" not in rows["lucky"] and "chance" in rows["lucky"]
    assert "≈" in rows["twin_a"] and "≈" in rows["twin_b"] and "**" not in rows["twin_a"] + rows["twin_b"]
    text = (folder / "leaderboard.md").read_text()
    assert text.startswith(markdown + "\n\n- Values:") and "A chance row is never marked best or tie." in text
    assert "reached 10.0% of 50% itself" in text.split("## Cells")[1], "the cell list shows each cell's verdicts"


def test_pareto_draws_the_baseline_dotted_and_chance_rows_hollow(ranked):
    from bench.results.plots import pareto_figure

    figure = pareto_figure(ranked, "sst2")
    lines = figure.axes[0].get_lines()
    dotted = [line for line in lines if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and dotted[0].get_label().startswith("baseline: majority class 1")
    assert dotted[0].get_ydata()[0] == 50.0
    hollow = [line for line in lines if line.get_markerfacecolor() == "none" and len(line.get_xdata())]
    assert [list(line.get_ydata()) for line in hollow] == [[pytest.approx(row(ranked, "lucky")["mean"])]]


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Three columns (sst2 @ 50, 70, 90%), methods a > b > c, two seeds, and dense: enough for Friedman/Nemenyi."""
    out = tmp_path_factory.mktemp("wide") / "res"
    for seed in (0, 1):
        values = correct(0.92, seed, 9)
        write(out, new_record("dense", 0.0, seed, values), values)
        for sparsity in (0.5, 0.7, 0.9):
            for salt, (method, rate) in enumerate((("a", 0.9), ("b", 0.75), ("c", 0.6))):
                values = correct(rate, seed, salt)
                write(out, new_record(method, sparsity, seed, values), values)
    return out


def test_plot_writes_the_critical_difference_diagram_and_the_report_embeds_it(wide, capsys):
    from PIL import Image

    from bench.cli.app import main

    assert main(["plot", str(wide)]) == 0
    printed = capsys.readouterr()
    assert "critical-difference.png" in printed.out and "critical-difference" not in printed.err
    assert printed.err.startswith("bench: warning: 3 heatmap(s) skipped (a, b, c): no mask files")
    with Image.open(wide / "plots" / "critical-difference.png") as image:
        assert image.format == "PNG" and image.size[0] >= 600
    assert main(["report", str(wide)]) == 0
    page = (wide / "report.html").read_text()
    assert '<img alt="critical-difference" src="data:image/png;base64,' in page
    assert "Friedman test over 3 task@sparsity columns: p = " in page and "Nemenyi critical difference" in page
    assert "Mean ranks (1 = best, on the row means): a 1.00, b 2.00, c 3.00" in page
    assert "baseline (majority class 1 (&#x27;great&#x27;) of the eval split)" in page
    assert page.count("<b>") == 3 and "Paired sign-flip permutation test" in page, "a is bold in each column"
