"""The deploy wing's ONNX path and measured sizes (issue 17, items 3 and 5): ONNX exports of dense and compacted
models compute what PyTorch computes, ONNX Runtime is timed by the same protocol, FLOPs are counted from the compacted
shapes, and the encoder's stored bytes are what the sparse file holds.

Tests that need the optional extra (``pip install 'prune-bench[onnx]'``) skip with that reason where it is absent;
CI installs it (``.[dev,onnx]``), so there they run.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import BertForQuestionAnswering, BertForSequenceClassification

from bench.core.prunable import prunable_weights
from bench.deploy import onnx_runtime
from bench.deploy.compaction import compact
from bench.deploy.export import SPARSE_FILE, size_report, write_export
from bench.deploy.flops import count_flops, flops_report
from tests.conftest import tiny_config
from tests.test_export import pruned_bert

NEEDS_EXTRA = "the optional extra is not installed: pip install 'prune-bench[onnx]'"
SEQ = 128


@pytest.fixture
def extra():
    """Skip (with the reason) unless onnx, onnxruntime and onnxscript import."""
    for name in ("onnx", "onnxscript"):
        pytest.importorskip(name, reason=NEEDS_EXTRA)
    return pytest.importorskip("onnxruntime", reason=NEEDS_EXTRA)


def dense_bert(heads: int = 4) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(num_attention_heads=heads)).eval()


# --- ONNX export and parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertForQuestionAnswering])
def test_compacted_model_exports_to_onnx_and_matches_pytorch_at_any_batch_and_length(extra, tmp_path, cls):
    compacted, report = compact(pruned_bert(cls))
    assert report.heads_removed and report.ffn_units_removed, "the model really is smaller"
    info = onnx_runtime.export_onnx(compacted, tmp_path / "m.onnx")
    assert info["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert info["outputs"] == (["logits"] if cls is BertForSequenceClassification else ["start_logits", "end_logits"])
    assert info["bytes"] == (tmp_path / "m.onnx").stat().st_size and isinstance(info["opset"], int)
    session = onnx_runtime.open_session(tmp_path / "m.onnx")
    assert [i.name for i in session.get_inputs()] == info["inputs"]
    options = session.get_session_options()
    assert options.intra_op_num_threads == torch.get_num_threads(), "as many threads as the PyTorch timings"
    assert options.graph_optimization_level == extra.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for batch, seq in [(2, 16), (1, SEQ), (5, 37)]:  # dynamic axes: not the traced shape either
        inputs = onnx_runtime.sample_inputs(compacted, batch, seq, seed=batch)
        assert onnx_runtime.max_abs_diff(compacted, session, inputs) <= onnx_runtime.PARITY_TOLERANCE


def test_dense_model_without_token_types_exports_too(extra, tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=1000, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    model = DistilBertForSequenceClassification(config).eval()
    info = onnx_runtime.export_onnx(model, tmp_path / "d.onnx")
    assert info["inputs"] == ["input_ids", "attention_mask"]
    session = onnx_runtime.open_session(tmp_path / "d.onnx")
    assert onnx_runtime.max_abs_diff(model, session) <= onnx_runtime.PARITY_TOLERANCE


# --- ONNX Runtime timing -------------------------------------------------------------------------------------


def test_onnx_report_times_dense_and_compacted_onnx_interleaved_with_parity(extra):
    dense = dense_bert()
    compacted = compact(pruned_bert())[0]
    report = onnx_runtime.onnx_report({"dense": dense, "compacted": compacted}, vocab_size=1000, batch_sizes=(1, 4),
                                      seq_length=16, runs=3, warmup=1)  # fmt: skip
    assert list(report["latency_ms"]) == ["batch_1", "batch_4"]
    for per_model in report["latency_ms"].values():
        assert list(per_model) == ["dense", "compacted"]
        for stats in per_model.values():
            assert stats["runs"] == 3 and 0 < stats["q1_ms"] <= stats["median_ms"] <= stats["q3_ms"]
    assert set(report["speed_up"]) == {"batch_1", "batch_4"}
    for batch, ratios in report["speed_up"].items():
        medians = report["latency_ms"][batch]
        assert ratios == {"compacted": pytest.approx(medians["dense"]["median_ms"] / medians["compacted"]["median_ms"])}
    assert report["parity_passed"] and set(report["parity_max_abs_diff"]) == {"dense", "compacted"}
    assert max(report["parity_max_abs_diff"].values()) <= report["tolerance"] == 1e-4
    assert report["graph_optimization"] == "ORT_ENABLE_ALL" and report["threads"] == torch.get_num_threads()
    assert report["runtime"] == f"onnxruntime {extra.__version__}" and isinstance(report["opset"], int)
    assert report["onnx_bytes"]["compacted"] < report["onnx_bytes"]["dense"]
    json.dumps(report)  # a record field


def test_without_the_extra_the_onnx_part_is_a_skip_note_not_an_error(monkeypatch):
    reason = "onnxruntime is not installed (pip install 'prune-bench[onnx]')"
    monkeypatch.setattr(onnx_runtime, "missing", lambda: reason)
    assert onnx_runtime.onnx_report({"dense": dense_bert()}, vocab_size=1000) == {"skipped": reason}
    from bench.deploy.inference import onnx_speed

    assert onnx_speed(dense_bert(), dense_bert(), 1000) == {"skipped": reason}


def test_missing_names_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert onnx_runtime.missing() == "onnxruntime is not installed (pip install 'prune-bench[onnx]')"


def test_an_export_failure_is_recorded_as_a_skip(monkeypatch):
    from bench.deploy.inference import onnx_speed

    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::foo\nmore")

    monkeypatch.setattr(onnx_runtime, "missing", lambda: None)
    monkeypatch.setattr(onnx_runtime, "export_onnx", fail)
    out = onnx_speed(dense_bert(), dense_bert(), 1000)
    assert out == {"skipped": "ONNX export or run failed: RuntimeError: unsupported operator aten::foo"}


def test_speed_report_adds_onnx_and_flops_and_keeps_its_keys(extra):
    from bench.deploy.inference import speed_report

    report = speed_report(pruned_bert(), dense_bert())
    assert {"latency_ms", "speed_up", "seq_length", "threads", "onnx", "flops"} <= set(report)
    assert set(report["latency_ms"]["batch_1"]) >= {"dense", "finalized", "compacted"}
    onnx = report["onnx"]
    assert set(onnx["latency_ms"]) == {"batch_1", "batch_32"}
    assert set(onnx["latency_ms"]["batch_32"]) == {"dense", "compacted"}
    assert set(onnx["speed_up"]["batch_1"]) == {"compacted"} and onnx["parity_passed"]
    assert report["flops"]["compacted"] < report["flops"]["dense"] and 0 < report["flops"]["ratio"] < 1
    json.dumps(report)


# --- FLOPs ---------------------------------------------------------------------------------------------------


def hand_count(model) -> int:
    """2 FLOPs per multiply-add of every matrix product of one forward pass at batch 1, 128 tokens, from the
    model's own Linear shapes: the prunable Linears over all tokens, attention QKᵀ and AV (2·S·S per Q row), the
    pooler and classifier on the first token."""
    flops = 0
    for pw in prunable_weights(model):
        out_features, in_features = pw.module.weight.shape
        flops += 2 * SEQ * in_features * out_features
        if pw.role == "q":
            flops += 2 * (2 * SEQ * SEQ * out_features)
    hidden = model.config.hidden_size
    return flops + 2 * hidden * hidden + 2 * hidden * model.config.num_labels


def test_flops_are_counted_from_the_compacted_shapes():
    dense = dense_bert()
    # 2 layers × (Q, K, V, O: 4·2·128·32·32 + FFN: 2·2·128·32·64 + attention: 2·2·128·128·32) + pooler + classifier
    assert count_flops(dense) == hand_count(dense) == 2 * (1_048_576 + 1_048_576 + 2_097_152) + 2_048 + 192
    finalized = pruned_bert()
    assert count_flops(finalized) == count_flops(dense), "the masked model still multiplies its zeros"
    compacted = compact(finalized)[0]
    assert count_flops(compacted) == hand_count(compacted) < count_flops(dense)
    report = flops_report(dense, compacted)
    assert report["dense"] == count_flops(dense) and report["compacted"] == count_flops(compacted)
    assert report["ratio"] == pytest.approx(report["compacted"] / report["dense"])
    assert (report["batch"], report["seq_length"]) == (1, SEQ)


def test_counting_flops_leaves_training_flags_alone():
    model = dense_bert().train()
    count_flops(model)
    assert all(module.training for module in model.modules())


# --- the encoder's stored bytes (item 5) ---------------------------------------------------------------------


def file_holds(path, names) -> int:
    """Bytes of the tensors stored for ``names`` in ``path``, read back through safetensors."""
    with safe_open(str(path), framework="pt") as handle:
        return sum(handle.get_tensor(key).numel() * handle.get_tensor(key).element_size() for key in handle.keys()
                   if key in names or key.rpartition(".")[0] in names)  # fmt: skip


def test_encoder_bytes_are_what_the_sparse_file_holds_for_the_prunable_weights(tmp_path):
    model = pruned_bert(sparsity=0.9)
    info = write_export(model, tmp_path)
    dense = sum(pw.module.weight.numel() * 4 for pw in prunable_weights(model))
    names = {f"{pw.name}.weight" for pw in prunable_weights(compact(model)[0])}
    assert info["encoder_dense_bytes"] == dense == 2 * (4 * 32 * 32 + 2 * 32 * 64) * 4
    assert info["encoder_bytes"] == file_holds(tmp_path / SPARSE_FILE, names)
    assert info["encoder_ratio"] == pytest.approx(info["encoder_bytes"] / dense) and info["encoder_ratio"] < 0.2
    assert info["encoder_ratio"] < info["sparse_bytes"] / info["compact_bytes"], "the embeddings dilute the file's"
    report = size_report(model)
    assert {k: report[k] for k in ("encoder_bytes", "encoder_dense_bytes", "encoder_ratio")} == {
        k: info[k] for k in ("encoder_bytes", "encoder_dense_bytes", "encoder_ratio")}  # fmt: skip


def test_a_dense_encoder_is_stored_at_its_dense_size(tmp_path):
    info = write_export(dense_bert(), tmp_path)
    assert info["encoder_bytes"] == info["encoder_dense_bytes"] and info["encoder_ratio"] == 1.0


# --- bench export --onnx -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_cell(tmp_path_factory, tiny_model_dir):
    """One finished magnitude cell (tiny sst2, 90 %) with its model saved."""
    from bench.run.runner import run_matrix
    from tests.test_runner import tiny_matrix

    matrix = tiny_matrix(tmp_path_factory.mktemp("onnx"), tiny_model_dir, methods=["magnitude"], sparsities=[0.9],
                         save_models=True)  # fmt: skip
    (rec,) = run_matrix(matrix, log=lambda line: None)
    assert rec["status"] == "finished"
    return matrix.output, rec


def test_bench_export_onnx_writes_a_checked_model_onnx(extra, saved_cell, tmp_path, capsys):
    from bench.cli.app import main

    output, rec = saved_cell
    assert {"encoder_bytes", "encoder_dense_bytes", "encoder_ratio"} <= set(rec["export"]), "the record has them"
    to = tmp_path / "x"
    assert main(["export", str(output), rec["id"][:12], "--to", str(to), "--onnx", "--no-check"]) == 0
    out = capsys.readouterr().out
    info = json.loads((to / "export.json").read_text())
    onnx = info["onnx"]
    assert onnx["file"] == "model.onnx" and onnx["bytes"] == (to / "model.onnx").stat().st_size
    assert onnx["parity"]["passed"] and onnx["parity"]["max_abs_diff"] <= onnx["parity"]["tolerance"] == 1e-4
    assert info["encoder_bytes"] == rec["export"]["encoder_bytes"] and info["encoder_ratio"] < 0.5
    assert "onnx: model.onnx" in out and ": ok" in out and "encoder weights" in out and "of their dense" in out


def test_bench_export_onnx_without_the_extra_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from bench.cli.app import main

    monkeypatch.setattr(onnx_runtime, "missing", lambda: "onnxruntime is not installed (pip install "
                        "'prune-bench[onnx]')")  # fmt: skip
    (tmp_path / "results").mkdir()
    assert main(["export", str(tmp_path / "results"), "abc", "--to", str(tmp_path / "x"), "--onnx"]) == 2
    err = capsys.readouterr().err
    assert "--onnx needs the optional extra" in err and "pip install 'prune-bench[onnx]'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
