"""``bench compare``: cells paired by what they measure, with B − A deltas."""

from __future__ import annotations

import pytest

from bench.core.errors import BenchError
from bench.results import records
from bench.results.compare import P_NOTE, compare, compare_folders
from bench.results.leaderboard import collect
from tests.test_leaderboard import RECORDS, record


def with_model(recs, model="m", wall=10.0):
    out = []
    for rec in recs:
        rec = {**rec, "cell": {**rec["cell"], "model": model, "budget": {}}, "wall_seconds": wall}
        out.append(rec)
    return out


def test_pairs_by_model_method_task_sparsity_seed_not_by_id():
    a = with_model(RECORDS)
    b = [{**r, "id": r["id"] + "-v2"} for r in with_model(RECORDS, wall=20.0)]
    b[0] = {**b[0], "metrics": {"accuracy": 73.5}}  # movement seed 0: 70 → 73.5
    pairs = compare(collect(a), collect(b))
    assert len(pairs) == 5, "finished cells only (the failed magnitude cell is not paired)"
    moved = pairs[(pairs["method"] == "movement") & (pairs["seed"] == 0)].iloc[0]
    assert (moved["value_a"], moved["value_b"], moved["delta"]) == (70.0, 73.5, 3.5)
    assert (pairs["wall_ratio"] == 2.0).all()
    assert compare(collect(a), collect(with_model(RECORDS, model="other"))).empty, "another model is not a pair"


def test_compare_folders_renders_deltas_and_counts_unpaired(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for rec in with_model(RECORDS):
        records.write_record(a, rec)
    extra = with_model([record("l0", "mnli", 0.5, 0, 50.0, 0.5)])[0]
    for rec in [*with_model(RECORDS[:2]), extra]:
        records.write_record(b, rec)
    text = compare_folders(a, b)
    assert "| movement | mnli   | 90%        | 0      | accuracy | 70.00 " in text
    assert "+0.00" in text
    assert text.endswith(f"2 cells in both; 3 only in {a}; 1 only in {b}. Deltas are B − A. {P_NOTE}")
    assert "| p " in text.splitlines()[0] and P_NOTE.startswith("p: paired sign-flip permutation test on the shared")
    with pytest.raises(BenchError, match="no results in"):
        compare_folders(a, tmp_path / "nothing")


def test_compare_prints_the_paired_test_p_where_both_cells_saved_predictions(tmp_path):
    import numpy as np

    from tests.test_significance_board import new_record, write

    a, b = tmp_path / "a", tmp_path / "b"
    right = 100.0 * (np.arange(500) < 400)
    worse = right.copy()
    worse[300:400] = 0.0  # B loses 100 answers that A had: p is tiny
    write(a, new_record("alpha", 0.9, 0, right), right)
    write(b, new_record("alpha", 0.9, 0, worse), worse)
    write(a, new_record("beta", 0.9, 0, right), right)
    write(b, new_record("beta", 0.9, 0, right), right, predictions=False)
    text = compare_folders(a, b)
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")]
             for line in text.splitlines()[2:] if line.startswith("|")}  # fmt: skip
    assert 0 < float(cells["alpha"][-1]) <= 0.001 and cells["alpha"][7] == "-20.00"
    assert cells["beta"][-1] == "", "no predictions in B: the p cell is blank"
    pairs = compare(collect(records.read_records(a)), collect(records.read_records(a)))
    assert pairs["p"].isna().all(), "no per-example arrays given: no p"


def test_compare_refuses_cells_of_different_protocols_unless_forced(tmp_path, capsys):
    import numpy as np

    from bench.cli.app import main
    from tests.test_significance_board import new_record, write

    a, b = tmp_path / "a", tmp_path / "b"
    right = 100.0 * (np.arange(200) < 150)
    small, large = new_record("alpha", 0.9, 0, right), new_record("alpha", 0.9, 0, right)
    small["cell"]["task"] = {"name": "sst2", "train_split": "train[:200]"}
    large["cell"]["task"] = {"name": "sst2", "train_split": "train[:2000]"}
    write(a, small, right)
    write(b, large, right)
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: 1 of 1 cell pairs were run under different protocols")
    assert "alpha/sst2@0.9#0" in err and "task.train_split: 'train[:200]' in A, 'train[:2000]' in B" in err
    assert "--force" in err and "Traceback" not in err
    assert main(["compare", str(a), str(b), "--force"]) == 0
    out = capsys.readouterr().out
    assert "Compared with --force across protocols" in out and "task.train_split" in out
    write(b, small | {"id": small["id"]}, right)  # the same protocol: no refusal, no note
    assert main(["compare", str(a), str(b)]) == 0
    assert "--force" not in capsys.readouterr().out
