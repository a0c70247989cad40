"""Tasks from YAML files (issue 16, item 9): the built-in GLUE files, --include-tasks folders, groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.tasks import yaml_tasks

from bench.core import registry
from bench.core.errors import BenchError

RTE_PAIRS = """\
task: rte_pairs
description: "RTE under another name, defined without Python"
doc: "Recognizing Textual Entailment from the GLUE files, as an outside user would define a task."
group: [mine]
dataset_path: nyu-mll/glue
dataset_name: rte
training_split: "train[:64]"
validation_split: "validation[:32]"
text_fields: [sentence1, sentence2]
num_labels: 2
label_words: ["Yes", "No"]
metric_list: [accuracy, f1]
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "rte_pairs.yaml").write_text(RTE_PAIRS)
    return tmp_path


@pytest.fixture
def clean_registry():
    """Tasks registered by a test stay out of the others."""
    before = dict(registry.tasks.entries)
    yield
    registry.tasks.__dict__["entries"] = before
    registry.tasks._loaded.clear()


# What the built-in GLUE tasks were as Python classes: their cells must keep their ids.
BEFORE = {
    "mnli": ("validation_matched", ("premise", "hypothesis"), 3, ("accuracy",), ("Yes", "Maybe", "No")),
    "sst2": ("validation", ("sentence",), 2, ("accuracy",), ("terrible", "great")),
    "cola": ("validation", ("sentence",), 2, ("matthews_correlation", "accuracy"), ("No", "Yes")),
    "mrpc": ("validation", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), ("No", "Yes")),
    "stsb": ("validation", ("sentence1", "sentence2"), 1, ("pearson", "spearman"), ()),
    "rte": ("validation", ("sentence1", "sentence2"), 2, ("accuracy",), ("Yes", "No")),
    "wnli": ("validation", ("sentence1", "sentence2"), 2, ("accuracy",), ("No", "Yes")),
    "qnli": ("validation", ("question", "sentence"), 2, ("accuracy",), ("Yes", "No")),
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_builtin_glue_files_give_the_classes_they_replaced(name):
    cls = registry.tasks.get(name)
    eval_split, text_keys, num_labels, metrics, words = BEFORE[name]
    assert (cls.eval_split, cls.text_keys, cls.num_labels, cls.metrics, cls.label_words) == (
        eval_split, text_keys, num_labels, metrics, words)  # fmt: skip
    assert cls.primary_metric == metrics[0] and cls.groups == ("glue",)
    assert cls().describe() == {"name": name, "dataset": "nyu-mll/glue", "config": name, "train_split": "train",
                                "eval_split": eval_split, "dev_fraction": 0.1}  # fmt: skip


def test_builtin_presets_and_class_names_are_kept():
    from bench.tasks.glue import MNLI, SST2

    assert SST2.__name__ == "SST2" and SST2.__module__ == "bench.tasks.glue"
    assert SST2.presets["quick"] == {"train_split": "train[:2000]", "eval_split": "validation"}
    assert MNLI.presets["paper"] == {"budget": {"epochs": 6, "batch_size": 32, "max_length": 128}}
    assert MNLI.presets["quick"]["eval_split"] == "validation_matched[:2000]"


def test_an_included_folder_registers_its_tasks_with_their_definition(folder, clean_registry):
    assert yaml_tasks.include(folder) == ["rte_pairs"]
    cls = registry.tasks.get("rte_pairs")
    assert cls.metrics == ("accuracy", "f1") and cls.text_keys == ("sentence1", "sentence2")
    described = cls().describe()
    assert described["definition"]["dataset_name"] == "rte"  # the file enters the cell ids
    assert registry.tasks.entry("rte_pairs").where() == str(folder / "rte_pairs.yaml")
    assert registry.tasks.resolve("mine") == ["rte_pairs"]


def test_an_edited_file_makes_another_cell_id(folder, clean_registry):
    def described() -> dict:
        return yaml_tasks.task_class(yaml_tasks.read_config(folder / "rte_pairs.yaml"))().describe()

    first = described()
    (folder / "rte_pairs.yaml").write_text(RTE_PAIRS.replace("num_labels: 2", "num_labels: 2\nlabel_field: label"))
    assert described() == first  # a default spelled out is the same definition
    (folder / "rte_pairs.yaml").write_text(RTE_PAIRS.replace('["Yes", "No"]', '["entailed", "not entailed"]'))
    assert described() != first


def test_a_worker_rebuilds_the_task_from_the_cell_without_the_folder(folder, clean_registry):
    from bench.config.resolve import task_by_key

    spec = yaml_tasks.task_class(yaml_tasks.read_config(folder / "rte_pairs.yaml"))().describe()
    assert "rte_pairs" not in registry.tasks.names()  # never included in this process
    task = task_by_key(json.dumps(spec, sort_keys=True))
    assert task.name == "rte_pairs" and task.label_words == ("Yes", "No")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("metric_list: [accuracy, f1]", "metric_list: [bleu]"), "metric_list: unknown metric(s) ['bleu']; valid: "),
        (("num_labels: 2", "num_labels: 2\nprompt: x"), "prompt: unknown field; valid: task, description"),
        (("label_words: [\"Yes\", \"No\"]", "label_words: [a]"), "label_words has 1 words for 2 labels"),
        (("task: rte_pairs", "task: RTE pairs"), "task: String should match pattern"),
        (("num_labels: 2\nlabel_words: [\"Yes\", \"No\"]", "num_labels: 1"),
         "a regression task (num_labels 1) reports pearson/spearman"),
        (("text_fields: [sentence1, sentence2]", "text_fields: []"), "text_fields: "),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_field(folder, edit, message):
    path = folder / "rte_pairs.yaml"
    path.write_text(RTE_PAIRS.replace(*edit))
    with pytest.raises(BenchError) as caught:
        yaml_tasks.read_config(path)
    text = str(caught.value)
    assert text.startswith(f"task file {path}: ") and message in text and "\n" not in text


def test_not_yaml_not_a_mapping_not_a_folder(tmp_path):
    (tmp_path / "a.yaml").write_text("task: [unclosed\n")
    with pytest.raises(BenchError, match="is not valid YAML"):
        yaml_tasks.read_config(tmp_path / "a.yaml")
    (tmp_path / "a.yaml").write_text("- a list\n")
    with pytest.raises(BenchError, match="must be a mapping of task fields, got list"):
        yaml_tasks.read_config(tmp_path / "a.yaml")
    with pytest.raises(BenchError, match="not a folder of task YAML files"):
        yaml_tasks.load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no \\*.yaml task files"):
        yaml_tasks.load_folder(tmp_path / "empty")


def test_two_files_with_one_name_and_a_taken_name_are_refused(folder, clean_registry):
    (folder / "again.yaml").write_text(RTE_PAIRS)
    with pytest.raises(BenchError, match="task 'rte_pairs' is defined twice: .*again.yaml and .*rte_pairs.yaml"):
        yaml_tasks.load_folder(folder)
    (folder / "again.yaml").write_text(RTE_PAIRS.replace("task: rte_pairs", "task: sst2"))
    with pytest.raises(BenchError, match="task name 'sst2' from .*again.yaml is already registered by prune-bench"):
        yaml_tasks.include(folder)


def test_every_builtin_file_is_valid_and_named_as_its_task():
    files = sorted((Path(yaml_tasks.__file__).parent / "configs" / "glue").glob("*.yaml"))
    assert [p.stem for p in files] == sorted(BEFORE)
    for path in files:
        assert yaml_tasks.read_config(path).task == path.stem


@pytest.mark.integration
def test_glue_group_leaves_out_a_task_without_its_train_split(capsys):
    names = registry.tasks.resolve("glue")
    assert names == ["cola", "mnli", "mrpc", "rte", "sst2", "stsb", "wnli"]  # the cache has no QNLI train split
    assert "--tasks glue leaves out qnli: its dataset has no 'train' split here" in capsys.readouterr().err


def test_an_unknown_name_lists_the_groups():
    with pytest.raises(BenchError, match="Did you mean 'glue'\\? Valid tasks and groups: .*squad.*glue"):
        registry.tasks.resolve("glu")


@pytest.mark.integration
def test_a_yaml_task_from_a_folder_runs_without_python(folder, tiny_model_dir, tmp_path, clean_registry, capsys):
    """``bench run --include-tasks DIR``: the file's task trains and is scored with its own metrics; the matrix
    ends with an MLflow run holding the leaderboard, in the experiment --experiment names."""
    from mlflow.tracking import MlflowClient

    from bench.cli.app import main
    from bench.results import records

    out = tmp_path / "out"
    code = main(["run", "--include-tasks", str(folder), "--tasks", "mine", "--methods", "dense,magnitude",
                 "--sparsities", "0.5", "--model", str(tiny_model_dir), "--epochs", "1", "--batch-size", "16",
                 "--max-length", "64", "--output", str(out), "--experiment", "yaml-tasks"])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-2000:]
    recs = records.read_records(out)
    assert {r["status"] for r in recs} == {"finished"} and len(recs) == 2
    assert all(set(r["metrics"]) == {"accuracy", "f1"} for r in recs)
    assert all(r["cell"]["task"]["definition"]["dataset_name"] == "rte" for r in recs)
    client = MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("yaml-tasks").experiment_id
    (matrix_run,) = client.search_runs([experiment], filter_string="tags.matrix = 'true'")
    names = {a.path for a in client.list_artifacts(matrix_run.info.run_id)}
    assert {"leaderboard.md", "leaderboard.csv", "cells.txt"} <= names


def test_the_readme_example_file_is_valid(tmp_path):
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "task: rte_pairs" in b]
    (tmp_path / "rte_pairs.yaml").write_text(block)
    config = yaml_tasks.read_config(tmp_path / "rte_pairs.yaml")
    assert config.task == "rte_pairs" and config.metric_list == ("accuracy", "f1") and config.group == ("mine",)
