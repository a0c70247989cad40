"""The published reference rows: the CSVs are well-formed and use this project's names; load() refuses malformed
files naming the file and line; matching() keeps only the rows of the cells' model, task and sparsity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.core.registry import methods, tasks
from bench.results import reference
from bench.results.leaderboard import collect

FOLDER = reference.DEFAULT_FOLDER
CSVS = sorted(FOLDER.glob("*.csv"))


def raw(path: Path) -> pd.DataFrame:
    """A CSV read as text, independently of :func:`reference.load`."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    return reference.load()


def test_the_reference_folder_has_the_papers_files():
    assert [p.name for p in CSVS] == ["movement_pruning.csv", "smp.csv"]


@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.name)
def test_every_csv_parses_with_the_columns_and_rows(path):
    df = raw(path)
    assert set(reference.REQUIRED) <= set(df.columns) <= set(reference.COLUMNS)
    assert len(df) > 0
    for column in ("value", "remaining", "sparsity"):
        pd.to_numeric(df[column], errors="raise")
    assert set(df["distill"]) <= {"true", "false"}


@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.name)
def test_every_row_has_a_source_with_arxiv_id_and_a_table(path):
    df = raw(path)
    assert (df["source"].str.strip() != "").all() and df["source"].str.contains(r"arXiv \d{4}\.\d{5}").all()
    assert df["table"].str.fullmatch(r"Table \d+").all()


@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.name)
def test_values_are_percentages_and_sparsity_is_one_minus_remaining(path):
    df = raw(path)
    value, remaining, sparsity = (df[c].astype(float) for c in ("value", "remaining", "sparsity"))
    assert value.between(0, 100).all()
    assert remaining.gt(0).all() and remaining.le(1).all()
    assert ((sparsity - (1 - remaining)).abs() < 1e-9).all()


def test_method_and_variant_names_are_registered(ref):
    assert set(ref["method"]) <= set(methods.names())
    for method, variant in ref[["method", "variant"]].drop_duplicates().itertuples(index=False):
        if variant:
            methods.get(method)(sparsity=0.5, variant=variant)  # raises BenchError on an unknown variant


def test_metric_names_belong_to_the_task(ref):
    for task, metric in ref[["task", "metric"]].drop_duplicates().itertuples(index=False):
        allowed = (*tasks.get(task).metrics, *reference.REFERENCE_ONLY_METRICS.get(task, ()))
        assert metric in allowed, f"{task}: {metric!r} not in {allowed}"


def test_reference_only_metrics_are_not_measured_metrics():
    for task, extra in reference.REFERENCE_ONLY_METRICS.items():
        assert not set(extra) & set(tasks.get(task).metrics)


def test_one_row_per_key(ref):
    assert not ref.duplicated(list(reference.KEY)).any()
    assert len(ref) == sum(len(raw(p)) for p in CSVS)


def test_movement_pruning_tables_2_and_3_are_complete(ref):
    mp = ref[ref["table"].isin(["Table 2", "Table 3"]) & ref["source"].str.contains("2005.07683")]
    for method in ("magnitude", "l0", "movement", "soft_movement"):
        for distill in (False, True):
            for remaining in (0.10, 0.03):
                for task, metric in (("mnli", "accuracy"), ("mnli", "accuracy_mm"), ("squad", "exact_match"),
                                     ("squad", "f1")):  # fmt: skip
                    hit = mp[(mp.method == method) & (mp.distill == distill) & (mp.task == task)
                             & (mp.metric == metric) & ((mp.remaining - remaining).abs() < 1e-9)]  # fmt: skip
                    assert len(hit) == 1, (method, distill, remaining, task, metric)
                    assert hit["table"].iloc[0] == ("Table 3" if distill else "Table 2")


@pytest.mark.parametrize(
    "method, variant, task, metric, sparsity, distill, value",
    [
        # figures the papers also state in their prose, or that a second source repeats
        ("magnitude", "", "squad", "f1", 0.97, False, 54.5),  # Sanh et al. §6: "54.5 F1 with 3% of the weights"
        ("soft_movement", "", "squad", "f1", 0.97, False, 79.9),  # "... and 79.9 F1 with soft movement pruning"
        ("movement", "", "squad", "f1", 0.90, True, 84.3),  # "movement pruning at 10% goes from 81.7 F1 to 84.3 F1"
        ("movement", "", "squad", "f1", 0.90, False, 81.7),
        ("dense", "", "mnli", "accuracy", 0.0, False, 84.5),
        ("smp", "S", "mnli", "accuracy", 0.50, True, 85.7),  # SMP §5.4: "85.7 accuracy compared to 84.5"
        ("smp", "S", "squad", "f1", 0.97, True, 84.1),  # the kongds/SMP README
    ],
)
def test_spot_values(ref, method, variant, task, metric, sparsity, distill, value):
    hit = ref[(ref.method == method) & (ref.variant == variant) & (ref.task == task) & (ref.metric == metric)
              & ((ref.sparsity - sparsity).abs() < 1e-9) & (ref.distill == distill)]  # fmt: skip
    assert hit["value"].tolist() == [value]


# ---- load() on malformed files ------------------------------------------------------------------------------------

HEADER = "method,variant,model,task,metric,value,remaining,sparsity,distill,source,table,note"
GOOD = "movement,,bert-base-uncased,mnli,accuracy,79.3,0.10,0.90,false,X 2020 (arXiv 2005.07683),Table 2,"


def write(folder: Path, *lines: str, name: str = "x.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_load_reads_a_good_file_with_types_and_label(tmp_path):
    df = reference.load(write(tmp_path, HEADER, GOOD, GOOD.replace("false", "true")))
    assert df["value"].tolist() == [79.3, 79.3]
    assert df["distill"].tolist() == [False, True] and df["distill"].dtype == bool
    assert df["label"].tolist() == ["movement", "movement +distill"]
    assert df[["file", "line"]].values.tolist() == [["x.csv", 2], ["x.csv", 3]]


def test_optional_columns_may_be_left_out(tmp_path):
    header = "method,model,task,metric,value,remaining,sparsity,distill,source,table"
    line = "movement,bert-base-uncased,mnli,accuracy,79.3,0.10,0.90,false,X (arXiv 2005.07683),Table 2"
    df = reference.load(write(tmp_path, header, line))
    assert df[["variant", "note"]].values.tolist() == [["", ""]]


@pytest.mark.parametrize(
    "line, message",
    [
        (GOOD.replace("79.3", "abc"), "x.csv line 3: value 'abc' is not a number"),
        (GOOD.replace("79.3", "120"), "x.csv line 3: value 120 is not a percentage"),
        (GOOD.replace("79.3", "nan"), "x.csv line 3: value 'nan' is not finite"),
        (GOOD.replace("0.10,0.90", "0.10,0.80"), "x.csv line 3: sparsity 0.80 is not 1 - remaining"),
        (GOOD.replace("0.10,0.90", "0,1"), "x.csv line 3: remaining 0 is not a fraction"),
        (GOOD.replace("false", "no"), "x.csv line 3: distill must be true or false"),
        (GOOD.replace("X 2020 (arXiv 2005.07683)", ""), "x.csv line 3: empty source"),
        (GOOD.replace("Table 2", ""), "x.csv line 3: empty table"),
        (GOOD + ",extra", "x.csv line 3: 13 fields, the header has 12"),
        (GOOD, "x.csv line 3: duplicate of x.csv line 2"),
    ],
)
def test_a_malformed_row_names_file_and_line(tmp_path, line, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        reference.load(write(tmp_path, HEADER, GOOD, line))


def test_a_duplicate_across_files_names_both(tmp_path):
    write(tmp_path, HEADER, GOOD, name="a.csv")
    write(tmp_path, HEADER, GOOD, name="b.csv")
    with pytest.raises(BenchError, match="b.csv line 2: duplicate of a.csv line 2"):
        reference.load(tmp_path)


def test_bad_headers_and_folders_are_refused(tmp_path):
    with pytest.raises(BenchError, match="x.csv: missing column\\(s\\) table"):
        reference.load(write(tmp_path / "a", HEADER.replace(",table", ""), GOOD))
    with pytest.raises(BenchError, match="x.csv: unknown column\\(s\\) seed"):
        reference.load(write(tmp_path / "b", HEADER + ",seed", GOOD + ",0"))
    with pytest.raises(BenchError, match="does not exist"):
        reference.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no reference CSV"):
        reference.load(tmp_path / "empty")


# ---- matching() ---------------------------------------------------------------------------------------------------


def cells(*rows: tuple[str, float], model: str | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["task", "target_sparsity"]).assign(method="movement")
    return df if model is None else df.assign(model=model)


def test_matching_keeps_only_the_cells_model_task_and_sparsity(ref):
    got = reference.matching(ref, cells(("mnli", 0.9), ("squad", 0.97), ("sst2", 0.9)), model="bert-base-uncased")
    assert set(zip(got["task"], got["sparsity"].round(2), strict=True)) == {("mnli", 0.9), ("squad", 0.97)}
    expected = ref[((ref.task == "mnli") & ((ref.sparsity - 0.9).abs() < 1e-9))
                   | ((ref.task == "squad") & ((ref.sparsity - 0.97).abs() < 1e-9))]  # fmt: skip
    assert len(got) == len(expected) > 0
    assert set(got["method"]) == {"magnitude", "l0", "movement", "soft_movement", "smp"}, "all methods of a level"
    assert list(got.columns) == [*ref.columns, "target_sparsity"]


def test_matching_uses_the_model_column_and_hub_aliases(ref):
    assert len(reference.matching(ref, cells(("mnli", 0.9), model="roberta-base"))) == 0
    by_alias = reference.matching(ref, cells(("mnli", 0.9), model="google-bert/bert-base-uncased"))
    by_argument = reference.matching(ref, cells(("mnli", 0.9)), model="bert-base-uncased")
    assert len(by_alias) == len(by_argument) > 0
    mixed = pd.concat([cells(("mnli", 0.9), model="roberta-base"), cells(("squad", 0.9), model="bert-base-uncased")])
    assert set(reference.matching(ref, mixed)["task"]) == {"squad"}


def test_matching_sparsity_tolerance(ref):
    near = reference.matching(ref, cells(("mnli", 0.904)), model="bert-base-uncased")
    assert len(near) > 0 and (near["target_sparsity"] == 0.904).all()
    assert len(reference.matching(ref, cells(("mnli", 0.906)), model="bert-base-uncased")) == 0
    assert len(reference.matching(ref, cells(("mnli", 0.8)), model="bert-base-uncased")) == 0
    dense = reference.matching(ref, cells(("squad", 0.0)), model="bert-base-uncased")
    assert set(dense["method"]) == {"dense"} and set(dense["metric"]) == {"exact_match", "f1"}


def test_matching_nearest_target_when_two_are_within_tolerance(ref):
    got = reference.matching(ref, cells(("mnli", 0.897), ("mnli", 0.901)), model="bert-base-uncased")
    assert not got.duplicated(list(reference.KEY)).any()
    assert (got["target_sparsity"] == 0.901).all()


def record(model, task, sparsity, cell_id="c1"):
    cell = {"method": "soft_movement", "task": {"name": task}, "sparsity": sparsity, "seed": 0}
    return {
        "id": cell_id, "status": "finished", "primary_metric": "f1", "metrics": {"f1": 80.0},
        "cell": cell if model is None else {**cell, "model": model},
        "sparsity": {"encoder_sparsity": sparsity, "remaining_params": 1e6, "total_params": 1e7},
    }  # fmt: skip


def test_matching_on_a_leaderboard_frame(ref):
    board = collect([record("bert-base-uncased", "squad", 0.9), record("prajjwal1/bert-tiny", "mnli", 0.9, "c2")])
    got = reference.matching(ref, board)
    assert set(got["task"]) == {"squad"} and (got["sparsity"].round(6) == 0.9).all() and len(got) > 0
    assert len(reference.matching(ref, collect([]))) == 0


def test_matching_fills_in_unknown_models_only(ref):
    board = collect([record(None, "squad", 0.9), record("prajjwal1/bert-tiny", "mnli", 0.9, "c2")])
    with pytest.raises(BenchError, match="1 cell\\(s\\) have no model"):
        reference.matching(ref, board)
    got = reference.matching(ref, board, model="bert-base-uncased")
    assert set(got["task"]) == {"squad"}, "the argument fills the missing model only; bert-tiny keeps its own"


def test_matching_refuses_frames_it_cannot_match(ref):
    with pytest.raises(BenchError, match="have no model"):
        reference.matching(ref, cells(("mnli", 0.9)))
    with pytest.raises(BenchError, match="needs 'task' and 'target_sparsity'"):
        reference.matching(ref, pd.DataFrame({"task": ["mnli"]}), model="bert-base-uncased")
    with pytest.raises(BenchError, match="reference frame lacks"):
        reference.matching(ref.drop(columns=["distill"]), cells(("mnli", 0.9)), model="bert-base-uncased")
