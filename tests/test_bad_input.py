"""Bad input: a clear message, exit code 2, and nothing written (no output folder, no bench.db, no mlflow.db).

Each case goes through ``bench.cli.app.main`` where it can. Model and head cases use tiny models saved to a temporary
folder (no Hub needed); the split, disk and protocol cases that reach the data checks need the GLUE mirror.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from bench.cli.app import main
from bench.config.matrix import Matrix, expand
from bench.core.errors import BenchError
from bench.results import records
from bench.results.folder import ResultsFolder
from bench.run import preflight
from tests.conftest import tiny_config

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "good", "bad", "movie"]


def glue_available() -> bool:
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot_download("nyu-mll/glue", repo_type="dataset", allow_patterns=["sst2/*", "mnli/*", "README.md"],
                          local_files_only=bool(constants.HF_HUB_OFFLINE))  # fmt: skip
    except Exception:  # noqa: BLE001 - any failure means: not available here
        return False
    return True


needs_glue = pytest.mark.skipif(
    not glue_available(),
    reason="nyu-mll/glue not reachable: set HF_HUB_CACHE=$(realpath ../shared/hf-hub) HF_HUB_OFFLINE=1",
)


def save_tokenizer(path: Path) -> None:
    from transformers import BertTokenizer

    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(path)


def save_model(path: Path, model) -> str:
    """``model`` (with a tiny tokenizer) saved to ``path``, usable as ``--model PATH``."""
    model.save_pretrained(path)
    save_tokenizer(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    from transformers import BertModel

    return save_model(tmp_path_factory.mktemp("encoder"), BertModel(tiny_config(vocab_size=len(VOCAB))))


def bench(capsys, tmp_path: Path, *args: str, output: Path | None = None) -> tuple[int, str, Path]:
    """``bench run ARGS --output OUT``: (exit code, stderr, OUT)."""
    out = output or tmp_path / "out"
    capsys.readouterr()  # drop what came before (e.g. progress bars of saving a model)
    code = main(["run", *args, "--output", str(out)])
    return code, capsys.readouterr().err, out


def assert_refused(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert err.startswith("bench: error: "), err
    for word in words:
        assert word.lower() in err.lower(), f"{word!r} not in {err!r}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to show nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


BASE = ("--methods", "dense,magnitude", "--tasks", "sst2", "--sparsities", "0.5")


# ---- names: unknown method or task, unknown preset, duplicates ------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--methods", "magnitud", "--tasks", "sst2"), ["unknown method 'magnitud'", "did you mean 'magnitude'"]),
        (("--methods", "dense", "--tasks", "sst"),
         ["unknown task 'sst'", "did you mean 'sst2'", "cola, mnli, mrpc, qnli, rte, squad, sst2, stsb, wnli"]),
        (("--methods", "dense,movment", "--tasks", "mnli"), ["did you mean 'movement'", "valid methods: abp"]),
    ],
)
def test_unknown_method_or_task_says_did_you_mean(capsys, tmp_path, args, words):
    code, err, out = bench(capsys, tmp_path, *args, "--sparsities", "0.5")
    assert_refused(code, err, *words)
    assert not out.exists()


def test_unknown_preset_says_did_you_mean(capsys, tmp_path):
    code, err, out = bench(capsys, tmp_path, *BASE, "--preset", "quik")
    assert_refused(code, err, "--preset", "unknown preset 'quik'", "did you mean 'quick'", "paper, proxy, quick")
    assert not out.exists()


def refused_with_flag(capsys, tmp_path, flag: str, value: str, words: list[str]) -> None:
    """``bench run`` with BASE's flags, ``flag`` set to ``value``: exit 2, ``words`` in the message, nothing written."""
    args = dict(zip(BASE[::2], BASE[1::2], strict=True)) | {flag: value}
    code, err, out = bench(capsys, tmp_path, *[x for kv in args.items() for x in kv])
    assert_refused(code, err, *words)
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--sparsities", "1.0", ["sparsity must be a number in [0, 1), got 1.0"]),
        ("--sparsities", "-0.1", ["[0, 1)", "-0.1"]),
        ("--sparsities", "nan", ["[0, 1)", "nan"]),
        ("--sparsities", "0.5,abc", ["sparsities: 'abc' is not a float"]),
        ("--seeds", "0,1.5", ["seeds: '1.5' is not an integer"]),
        ("--seeds", "-1", ["seed must be an integer in [0, 2**32)"]),
    ],
)
def test_bad_sparsity_or_seed(capsys, tmp_path, flag, value, words):
    refused_with_flag(capsys, tmp_path, flag, value, words)


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--sparsities", "0.5,0.9,0.5", ["duplicate sparsities", "[0.5, 0.9, 0.5]"]),
        ("--seeds", "0,1,0", ["duplicate seeds", "[0, 1, 0]"]),
        ("--methods", "dense,magnitude,dense", ["duplicate method(s)", "dense"]),
        ("--tasks", "sst2,mnli,sst2", ["duplicate task(s)", "sst2"]),
    ],
)
def test_duplicate_matrix_entry(capsys, tmp_path, flag, value, words):
    refused_with_flag(capsys, tmp_path, flag, value, words)


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--epochs", "-1", ["--epochs", "expected a number > 0 and <= 1000, got -1.0"]),
        ("--batch-size", "0", ["--batch-size", "expected an integer >= 1 and <= 65536, got 0"]),
        ("--learning-rate", "inf", ["--learning-rate", "expected a number > 0"]),
        ("--trials", "-1", ["--trials", "expected an integer >= 0 and <= 10000, got -1"]),
        ("--timeout", "0", ["--timeout", "> 0"]),
        ("--model", "", ["--model", "non-empty string"]),
    ],
)
def test_bad_flag_values_name_the_flag(capsys, tmp_path, flag, value, words):
    code, err, out = bench(capsys, tmp_path, *BASE, flag, value)
    assert_refused(code, err, *words)
    assert not out.exists()


# ---- the model ------------------------------------------------------------------------------------------------------
def test_unresolvable_hub_model_offline_names_it_and_hints_at_the_cache(capsys, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, err, out = bench(capsys, tmp_path, *BASE, "--model", "no-such-org/no-such-model")
    assert_refused(code, err, "cannot resolve model 'no-such-org/no-such-model'", "not a local folder",
                   "HF_HUB_OFFLINE", f"HF_HUB_CACHE={constants.HF_HUB_CACHE}", "unset HF_HUB_OFFLINE")  # fmt: skip
    assert not out.exists()


def test_missing_local_model_folder_says_so(capsys, tmp_path):
    missing = tmp_path / "models" / "mine"
    code, err, out = bench(capsys, tmp_path, *BASE, "--model", str(missing))
    assert_refused(code, err, f"model '{missing}'", "no such folder")
    assert not out.exists()


def test_folder_that_is_not_a_saved_model(capsys, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    code, err, out = bench(capsys, tmp_path, *BASE, "--model", str(folder))
    assert_refused(code, err, "has no config.json")
    assert not out.exists()


def test_architecture_outside_the_prunable_table_lists_the_supported_ones(capsys, tmp_path):
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(vocab_size=len(VOCAB), n_embd=16, n_layer=1, n_head=2, n_positions=32)
    model = save_model(tmp_path / "gpt2", GPT2Model(config))
    code, err, out = bench(capsys, tmp_path, *BASE, "--model", model)
    assert_refused(code, err, "unsupported architecture 'gpt2'", "bert, distilbert, mpnet, roberta")
    assert not out.exists()


def test_classifier_checkpoint_with_another_label_count_is_refused(capsys, tmp_path):
    from transformers import BertForSequenceClassification

    classifier = BertForSequenceClassification(tiny_config(vocab_size=len(VOCAB), num_labels=2))
    two_labels = save_model(tmp_path / "sst2-clf", classifier)
    code, err, out = bench(capsys, tmp_path, "--methods", "dense", "--tasks", "mnli", "--sparsities", "0.5",
                           "--model", two_labels)  # fmt: skip
    assert_refused(code, err, "BertForSequenceClassification checkpoint with a 2-label head", "'mnli' has 3 labels")
    assert not out.exists()


def test_head_the_architecture_lacks_is_refused(capsys, tmp_path, monkeypatch):
    from transformers import BertGenerationConfig

    from bench.core import prunable

    monkeypatch.setitem(prunable.ARCHITECTURES, "bert-generation", prunable.ARCHITECTURES["bert"])
    folder = tmp_path / "bert-generation"
    folder.mkdir()
    BertGenerationConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32).save_pretrained(folder)  # fmt: skip
    (folder / "model.safetensors").write_bytes(b"not read by the checks")
    save_tokenizer(folder)
    code, err, out = bench(capsys, tmp_path, *BASE, "--model", str(folder))
    assert_refused(code, err, "task 'sst2' needs a sequence-classification head",
                   "AutoModelForSequenceClassification has none", "'bert-generation'")  # fmt: skip
    assert not out.exists()


# ---- splits ---------------------------------------------------------------------------------------------------------
@needs_glue
@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--train-split", "trian[:100]", ["train split 'trian[:100]'", "no split 'trian'", "did you mean 'train'",
                                          "available: train, validation"]),  # fmt: skip
        ("--eval-split", "validation_mismatched", ["no split 'validation_mismatched'"]),
        ("--train-split", "train[:100000000]", ["100000000", "past the end of split 'train'", "examples"]),
        ("--eval-split", "validation[:10", ["malformed", "validation[:10"]),
        ("--train-split", "train[20:10]", ["selects no examples"]),
    ],
)
def test_missing_split_or_slice_larger_than_the_split(capsys, tmp_path, tiny_encoder, flag, value, words):
    task = "mnli" if "mismatched" in value else "sst2"
    code, err, out = bench(capsys, tmp_path, "--methods", "dense", "--tasks", task, "--sparsities", "0.5",
                           "--model", tiny_encoder, flag, value)  # fmt: skip
    assert_refused(code, err, f"task '{task}'", *words)
    assert not out.exists()


@needs_glue
def test_slice_message_names_both_numbers(tmp_path, tiny_encoder):
    from bench.tasks.glue import SST2

    sizes = SST2().split_sizes()
    matrix = Matrix(methods=["dense"], tasks=["sst2"], sparsities=[0.5], model=tiny_encoder, output=tmp_path / "o",
                    splits={"*": {"train_split": f"train[:{sizes['train'] + 1}]"}})  # fmt: skip
    with pytest.raises(BenchError) as err:
        preflight.check(matrix, expand(matrix))
    assert f"{sizes['train'] + 1}" in str(err.value) and f"has {sizes['train']} examples" in str(err.value)


# ---- the config file ------------------------------------------------------------------------------------------------
GOOD = "methods: [dense, movement]\ntasks: [sst2]\nsparsities: [0.5]\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (GOOD + "budget: {epochs: [1\n", ["malformed config", "line 5"]),
        (GOOD + "sparsity: [0.5]\n", ["unknown key 'sparsity'", "at line 4", "did you mean 'sparsities'"]),
        (GOOD + "budget: 3\n", ["line 4", "budget: expected a mapping, got 3 (int)"]),
        (GOOD + "budget:\n  epochs: 1\n  batch_sise: 8\n", ["line 6", "unknown budget setting 'batch_sise'",
                                                            "did you mean 'batch_size'"]),  # fmt: skip
        (GOOD + "budget: {epochs: one}\n", ["line 4", "budget.epochs: expected a number > 0 and <= 1000, got 'one' "
                                                      "(str)"]),  # fmt: skip
        (GOOD + "splits: [1]\n", ["line 4", "splits: expected a mapping"]),
        (GOOD + "splits:\n  sst2:\n    train_split: 5\n", ["line 6", "splits.sst2.train_split", "non-empty string"]),
        (GOOD + "splits: {sst: {train_split: 'train[:10]'}}\n", ["line 4", "unknown task 'sst'", "did you mean"]),
        (GOOD + "seeds: [0.5]\n", ["line 4", "seeds: 0.5 is not an integer"]),
        (GOOD + "seeds:\n  - 0\n  - x\n", ["line 6", "seeds: 'x' is not an integer"]),
        (GOOD + "trials: -1\n", ["line 4", "trials: expected an integer >= 0 and <= 10000, got -1"]),
        (GOOD + "trials: 2.5\n", ["line 4", "trials: expected an integer >= 0 and <= 10000, got 2.5 (float)"]),
        ("methods: [dense]\ntasks: [sst2]\nsparsities: abc\n", ["line 3", "sparsities: 'abc' is not a float"]),
        (GOOD + "method_hparams: {movement: {mask_lr: \"x\"}}\n",
         ["line 4", "method_hparams.movement.mask_lr", "'mask_lr' of method 'movement' must be a finite number",
          "got 'x' (str)"]),  # fmt: skip
        (GOOD + "method_hparams:\n  movement:\n    mask_rate: 0.1\n",
         ["line 6", "unknown hyperparameter 'mask_rate'", "did you mean 'mask_lr'"]),  # fmt: skip
        (GOOD + "method_hparams: {rpp: {reweight_every: 2.5}}\n", ["line 4", "must be an integer"]),
        (GOOD + "search_space: {mask_lr: {low: 0.1, high: 0.01}}\n", ["line 4", "low (0.1) must not exceed high"]),
        (GOOD + "search_space: {learning_rate: fast}\n", ["line 4", "search_space.learning_rate", "number > 0"]),
        (GOOD + "search_space: {mask_rate: 0.1}\n", ["line 4", "unknown search knob 'mask_rate'", "'mask_lr'"]),
        (GOOD + "distillation: {temperature: 0}\n", ["line 4", "distillation.temperature: expected a number > 0"]),
        (GOOD + "distillation: {temp: 2}\n", ["line 4", "unknown setting 'temp'"]),
        (GOOD + "distill: maybe\n", ["line 4", "distill: expected true or false"]),
        (GOOD + "output: 5\n", ["line 4", "output: expected a non-empty string, got 5 (int)"]),
        (GOOD + "preset: fast\n", ["line 4", "unknown preset 'fast'"]),
        (GOOD + "methods: [dense]\n", ["key 'methods' given twice, at lines 1 and 4"]),
        ("- methods\n- tasks\n", ["must be a mapping of matrix fields, got list"]),
        ("?\n", ["line 1", "a key must be a matrix field name, got None (NoneType); valid: methods"]),
        (GOOD + "1: x\n", ["line 4", "a key must be a matrix field name, got 1 (int)"]),
    ],
)
def test_malformed_config_names_the_key_and_the_line(capsys, tmp_path, text, words):
    config = tmp_path / "matrix.yaml"
    config.write_text(text)
    code, err, out = bench(capsys, tmp_path, "--config", str(config))
    assert_refused(code, err, *words)
    assert str(config) in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("budget: {weight_decay: 1.0e+9}\n", ["line 5", "budget.weight_decay", "<= 1"]),
        ("budget: {eval_batch_size: 100000000}\n", ["line 5", "budget.eval_batch_size", "<= 65536"]),
        ("budget: {doc_stride: 100000000}\n", ["line 5", "budget.doc_stride", "<= 8192"]),
        ("budget: {epochs: 5000}\n", ["line 5", "budget.epochs", "<= 1000"]),
        ("search_space: {learning_rate: {high: 1.0e+9}}\n", ["line 5", "search_space.learning_rate.high", "<= 1"]),
        ("distillation: {temperature: 1.0e+9}\n", ["line 5", "distillation.temperature", "<= 100"]),
        ("trials: 100000000\n", ["line 5", "trials", "<= 10000"]),
        ("lease_seconds: 1.0e+12\n", ["line 5", "lease_seconds", "<= 86400"]),
    ],
)
def test_config_values_far_out_of_range_name_their_bound(capsys, tmp_path, text, words):
    config = tmp_path / "matrix.yaml"
    config.write_text(GOOD + "model: /no/such/model\n" + text)
    code, err, out = bench(capsys, tmp_path, "--config", str(config))
    assert_refused(code, err, str(config), *words)
    assert not out.exists()


def test_max_length_longer_than_the_model_takes_is_refused(tmp_path, tiny_encoder):
    matrix = matrix_for(tmp_path, tiny_encoder, budget={"epochs": 1, "batch_size": 16, "max_length": 1000})
    with pytest.raises(BenchError, match="--max-length 1000 is longer than model .* takes \\(512 tokens"):
        preflight.check(matrix, expand(matrix))
    assert not matrix.output.exists()


def test_numbers_in_exponent_form_are_numbers(tmp_path):
    """Plain PyYAML reads ``1e-2`` as a string; the config loader reads it as YAML 1.2 does."""
    from bench.config.yaml_config import load_config

    config = tmp_path / "matrix.yaml"
    config.write_text(GOOD + "method_hparams: {movement: {mask_lr: 1e-2}}\nbudget: {learning_rate: 3E-5}\n")
    fields = load_config(config)
    assert fields["method_hparams"]["movement"]["mask_lr"] == 0.01 and fields["budget"]["learning_rate"] == 3e-5


def test_method_hyperparameter_types_follow_the_defaults():
    from bench.core import registry

    movement, rpp, smp = (registry.methods.get(n) for n in ("movement", "rpp", "smp"))
    assert movement(0.5, mask_lr=1).hparams["mask_lr"] == 1, "an int is fine where a float is the default"
    for cls, bad, expected in [(movement, {"mask_lr": "0.1"}, "a finite number"),
                               (movement, {"mask_lr": float("nan")}, "a finite number"),
                               (movement, {"score_init": True}, "a finite number"),
                               (rpp, {"reweight_every": 10.0}, "an integer"),
                               (smp, {"variant": 1}, "a string")]:  # fmt: skip
        name = next(iter(bad))
        with pytest.raises(BenchError, match=f"hyperparameter '{name}' of method '{cls.name}' must be {expected}"):
            cls(0.5, **bad)


# ---- the output folder ----------------------------------------------------------------------------------------------
def fake_records(output: Path, cells, status: str = records.FINISHED) -> None:
    done = {"primary_metric": "accuracy", "metrics": {"accuracy": 50.0},
            "sparsity": {"encoder_sparsity": 0.5, "remaining_params": 1, "total_params": 2}}  # fmt: skip
    for cell in cells:
        rec = {"id": cell.id, "cell": cell.to_dict(), "status": status}
        records.write_record(output, {**rec, **(done if status == records.FINISHED else {})})


def matrix_for(tmp_path: Path, model: str, **overrides) -> Matrix:
    fields = dict(methods=["dense", "magnitude"], tasks=["sst2"], sparsities=[0.5], model=model,
                  output=tmp_path / "out", splits={"*": {"train_split": "train[:48]", "eval_split": "validation[:24]"}},
                  budget={"epochs": 1, "batch_size": 16})  # fmt: skip
    fields.update(overrides)
    return Matrix(**fields)


def test_same_folder_takes_more_methods_sparsities_seeds_and_tasks(tmp_path):
    first = matrix_for(tmp_path, "some/model")
    fake_records(first.output, expand(first))
    more = matrix_for(tmp_path, "some/model", methods=["dense", "magnitude", "movement"], sparsities=[0.5, 0.9],
                      seeds=[0, 1], tasks=["sst2", "mnli"])  # fmt: skip
    found = preflight.check_records(more, expand(more))
    assert set(found) == {c.id for c in expand(first)}, "the finished records are found (and will be skipped)"
    assert preflight.check_records(first, expand(first)).keys() == found.keys(), "the same matrix again is fine"


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"model": "other/model"}, ["was run on model 'some/model'", "this matrix uses 'other/model'"]),
        ({"splits": {"*": {"train_split": "train[:96]", "eval_split": "validation[:24]"}}},
         ["ran task 'sst2' with train_split 'train[:48]'", "this matrix has 'train[:96]'"]),  # fmt: skip
        ({"budget": {"epochs": 2, "batch_size": 16}}, ["with budget epochs 1", "this matrix has 2"]),
        ({"trials": 2}, ["without HP search", "with an HP search of 2 trials"]),
    ],
)
def test_output_folder_of_another_protocol_is_refused_naming_a_record(capsys, tmp_path, overrides, words):
    first = matrix_for(tmp_path, "some/model")
    fake_records(first.output, expand(first))
    before = snapshot(first.output)
    second = matrix_for(tmp_path, **{"model": "some/model", **overrides})
    with pytest.raises(BenchError) as err:
        preflight.check(second, expand(second))
    message = str(err.value)
    assert "holds records of another protocol" in message and str(ResultsFolder(first.output).cells) in message
    assert ".json" in message and "new --output" in message
    for word in words:
        assert word in message

    config = tmp_path / "second.yaml"
    given = second.model_dump(mode="json", exclude_none=True)
    keys = ("methods", "tasks", "sparsities", "model", "splits", "budget", "trials")
    config.write_text(json.dumps({k: v for k, v in given.items() if k in keys}))
    code, stderr, _ = bench(capsys, tmp_path, "--config", str(config), output=first.output)
    assert_refused(code, stderr, "another protocol")
    assert snapshot(first.output) == before, "nothing was written"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", ["not valid JSON"]),
        ("[1, 2]", ["expected a JSON object, got list"]),
        ('{"id": "x"}', ["missing key(s) status, cell"]),
        ('{"id": "%s", "status": "finished", "cell": {"model": "m"}}', ["'cell' lacks 'method'"]),
    ],
)
def test_corrupt_record_is_named(capsys, tmp_path, content, words):
    first = matrix_for(tmp_path, "some/model")
    cells = expand(first)
    fake_records(first.output, cells[:1])
    bad = ResultsFolder(first.output).record("f" * 64)
    bad.write_text(content.replace("%s", "f" * 64))
    before = snapshot(first.output)
    config = tmp_path / "m.yaml"
    config.write_text("methods: [dense, magnitude]\ntasks: [sst2]\nsparsities: [0.5]\nmodel: some/model\n"
                      "budget: {epochs: 1, batch_size: 16}\n"
                      "splits: {'*': {train_split: 'train[:48]', eval_split: 'validation[:24]'}}\n")
    code, err, _ = bench(capsys, tmp_path, "--config", str(config), output=first.output)
    assert_refused(code, err, f"corrupt record {bad}", *words)
    assert f"bench forget {first.output} {'f' * 12}" in err, "the one way to make the cell run again"
    assert "its cell then runs again" not in err, "deleting a record does not rerun its cell (the queue has it)"
    assert snapshot(first.output) == before, "nothing was written"
    with pytest.raises(BenchError, match="corrupt record .*ffff.json"):
        records.read_records(first.output, on_bad="raise")
    assert main(["leaderboard", str(first.output)]) == 0, "a reading command skips it"
    err = capsys.readouterr().err
    assert f"bench: warning: skipped record {bad}: " in err and f"1 record of {first.output} skipped" in err


def test_temporary_files_of_a_writer_are_not_records(tmp_path):
    first = matrix_for(tmp_path, "some/model")
    fake_records(first.output, expand(first)[:1])
    (ResultsFolder(first.output).cells / ".tmp-abc.json").write_text("{half a rec")
    assert len(records.read_records(first.output)) == 1
    assert len(preflight.check_records(first, expand(first))) == 1


# ---- unwritable output, full disk -----------------------------------------------------------------------------------
def test_output_under_a_regular_file(capsys, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    code, err, out = bench(capsys, tmp_path, *BASE, output=blocker / "run")
    assert_refused(code, err, f"cannot create output folder {blocker / 'run'}", f"{blocker} is a file")
    assert blocker.read_text() == "a file where a folder should be"


def test_output_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("x")
    code, err, _ = bench(capsys, tmp_path, *BASE, output=blocker)
    assert_refused(code, err, f"output folder {blocker} is a file")


def test_unwritable_output_folder(capsys, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode, **kw))
    code, err, out = bench(capsys, tmp_path, *BASE, output=locked / "run")
    assert_refused(code, err, f"cannot create {locked / 'run'} in {locked}", "permission denied")
    assert not out.exists()


def test_unwritable_sqlite_storage_folder(capsys, tmp_path):
    blocker = tmp_path / "db"
    blocker.write_text("x")
    code, err, out = bench(capsys, tmp_path, *BASE, "--storage", f"sqlite:///{blocker}/bench.db")
    assert_refused(code, err, "--storage database", f"{blocker} is a file")
    assert not out.exists()


DiskUsage = namedtuple("DiskUsage", "total used free")


@needs_glue
def test_full_disk_is_refused_before_training(capsys, tmp_path, tiny_encoder, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    monkeypatch.setattr("bench.run.cell_run.train_and_evaluate", lambda *a, **k: pytest.fail("training started"))
    code, err, out = bench(capsys, tmp_path, *BASE, "--model", tiny_encoder, "--save-models",
                           "--train-split", "train[:16]", "--eval-split", "validation[:8]")  # fmt: skip
    assert_refused(code, err, "not enough free disk space", "1 MiB free", "MiB for records and databases",
                   "plus 2 saved model(s)", "another disk")  # fmt: skip
    assert not out.exists()


@needs_glue
def test_valid_matrix_passes_the_checks_quickly_and_writes_nothing(tmp_path, tiny_encoder):
    import time

    matrix = matrix_for(tmp_path, tiny_encoder, tasks=["sst2", "mnli", "squad"], save_models=True,
                        splits={"sst2": {"train_split": "train[:48]", "eval_split": "validation[:24]"}})  # fmt: skip
    cells = expand(matrix)
    preflight.check(matrix, cells)  # imports and caches warm
    started = time.perf_counter()
    preflight.check(matrix, cells)
    assert time.perf_counter() - started < 5
    assert not matrix.output.exists()
