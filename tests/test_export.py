"""Structured compaction, sparse storage and ``bench export``: the export computes what the cell computed."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
)

from bench.cli.app import main
from bench.core import registry
from bench.core.errors import BenchError
from bench.core.prunable import prunable_weights
from bench.deploy.compaction import compact
from bench.deploy.export import SPARSE_FILE, export_cell, load_export, size_report, write_export
from bench.deploy.sparse_store import encoded_bytes, load_sparse, save_sparse
from bench.run.runner import run_matrix
from tests.conftest import tiny_config
from tests.test_runner import tiny_matrix

HEAD = 8  # head size of the 4-head tiny model below (hidden 32)


def roles_of(model, layer):
    return {pw.role: pw.module for pw in prunable_weights(model) if pw.layer == layer}


def pruned_bert(cls=BertForSequenceClassification, sparsity=0.7, seed=0):
    """A tiny BERT with random biases, ``sparsity`` random zeros, and known dead heads and FFN units:
    layer 0: head 0 has zero V rows (its bias is folded), head 3 zero O columns; FFN units 0-9 zero FFN-in rows
    (folded), 10-19 zero FFN-out columns. Layer 1: every head has zero V rows (one must stay)."""
    torch.manual_seed(seed)
    labels = 2 if "QuestionAnswering" in cls.__name__ else 3
    model = cls(tiny_config(num_attention_heads=4, num_labels=labels)).eval()
    with torch.no_grad():
        for pw in prunable_weights(model):
            pw.module.bias.normal_()
            w = pw.module.weight
            w[torch.rand_like(w) < sparsity] = 0
        r0, r1 = roles_of(model, 0), roles_of(model, 1)
        r0["v"].weight[:HEAD] = 0
        r0["o"].weight[:, 3 * HEAD :] = 0
        r0["ffn_in"].weight[:10] = 0
        r0["ffn_out"].weight[:, 10:20] = 0
        r1["v"].weight.zero_()
    return model


def inputs():
    ids = torch.randint(0, 1000, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # padding must not matter for a folded head
    return {"input_ids": ids, "attention_mask": mask}


def test_compaction_removes_dead_heads_and_units_and_computes_the_same_function():
    model = pruned_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compacted, report = compact(model)
    r0, r1 = roles_of(compacted, 0), roles_of(compacted, 1)
    assert r0["q"].out_features == r0["v"].out_features == 2 * HEAD and r0["o"].in_features == 2 * HEAD
    assert r1["v"].out_features == HEAD, "a layer whose every head is dead keeps one"
    original = roles_of(model, 0)
    dead = (original["ffn_in"].weight == 0).all(1) | (original["ffn_out"].weight == 0).all(0)
    assert bool(dead[:20].all())
    assert r0["ffn_in"].out_features == r0["ffn_out"].in_features == 64 - int(dead.sum())
    assert report.heads_total == 8 and report.heads_removed == 2 + 3
    assert report.ffn_units_removed >= 20
    assert 0 < report.structured_weights <= report.pruned_weights
    assert report.structured_fraction == pytest.approx(report.structured_weights / report.pruned_weights)
    assert report.compacted_zeros == report.pruned_weights - report.structured_weights
    torch.testing.assert_close(compacted(**inputs()).logits, model(**inputs()).logits, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the input model is unchanged"


def test_without_folding_the_biases_the_outputs_would_differ():
    """Guards the fold: the dead V head and FFN-in rows have non-zero biases that must move into the next bias."""
    model = pruned_bert()
    compacted, _ = compact(model)
    with torch.no_grad():
        roles_of(compacted, 0)["o"].bias.copy_(roles_of(model, 0)["o"].bias)
    assert not torch.allclose(compacted(**inputs()).logits, model(**inputs()).logits, atol=1e-4)


def test_dense_model_compacts_to_itself():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config()).eval()
    compacted, report = compact(model)
    assert report.heads_removed == report.ffn_units_removed == report.structured_weights == 0
    assert report.structured_fraction == 0.0
    pairs = zip(model.state_dict().values(), compacted.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_mpnet_keeps_its_heads_but_loses_ffn_units():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64)  # fmt: skip
    model = MPNetForSequenceClassification(config).eval()
    with torch.no_grad():
        roles = roles_of(model, 0)
        roles["v"].weight[:HEAD] = 0
        roles["ffn_in"].weight[:16] = 0
    compacted, report = compact(model)
    assert report.heads_removed == 0 and report.ffn_units_removed == 16
    ids = torch.randint(0, 100, (2, 9))
    torch.testing.assert_close(compacted(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls, auto", [(BertForSequenceClassification, AutoModelForSequenceClassification),
                                       (None, AutoModelForQuestionAnswering)])  # fmt: skip
def test_export_loads_with_the_safe_loader_from_either_file_and_not_silently_with_stock_from_pretrained(tmp_path, cls,
                                                                                                        auto):
    from transformers import BertForQuestionAnswering

    model = pruned_bert(cls or BertForQuestionAnswering)
    info = write_export(model, tmp_path)
    sparse, dense = load_export(tmp_path), load_export(tmp_path, sparse=False)
    reference = model(**inputs())
    for loaded in (sparse, dense):
        assert type(loaded).__name__ == f"Compact{type(model).__name__}"
        out = loaded(**inputs())
        for key in ("logits",) if cls else ("start_logits", "end_logits"):
            torch.testing.assert_close(out[key], reference[key], atol=1e-5, rtol=1e-5)
    assert roles_of(dense, 0)["v"].out_features == 2 * HEAD
    assert info["sparse_bytes"] < info["compact_bytes"]
    with pytest.raises(RuntimeError, match="mismatch"):  # per-layer shapes: stock classes cannot size them
        auto.from_pretrained(tmp_path)


def test_load_export_refuses_a_plain_model_folder(tmp_path):
    BertForSequenceClassification(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(BenchError, match="not a bench export"):
        load_export(tmp_path)


@pytest.mark.parametrize("sparsity, layout", [(0.0, None), (0.5, "bitmask"), (0.99, "csr")])
def test_sparse_store_picks_the_smallest_layout_and_round_trips_exactly(tmp_path, sparsity, layout):
    torch.manual_seed(0)
    weight = torch.randn(64, 96)
    weight[torch.rand_like(weight) < sparsity] = 0
    state = {"w": weight, "b": torch.randn(64)}
    path = save_sparse(state, tmp_path / "s.safetensors", {"w"})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        info = json.loads(handle.metadata()["bench.sparse"])
    assert info.get("w", {}).get("format") == layout
    loaded = load_sparse(path)
    assert torch.equal(loaded["w"], weight) and torch.equal(loaded["b"], state["b"])
    sizes = encoded_bytes(weight)
    assert path.stat().st_size <= min(sizes.values()) + 64 * 4 + 1024, "file ≈ smallest layout + bias + header"


def test_wide_weights_use_32_bit_column_indices(tmp_path):
    weight = torch.zeros(2, 40000)
    weight[0, 39999] = 1.5
    path = save_sparse({"w": weight}, tmp_path / "s.safetensors", {"w"})
    assert torch.equal(load_sparse(path)["w"], weight)


def test_file_shrinks_with_sparsity():
    ratios = [size_report(pruned_bert(sparsity=s))["file_ratio"] for s in (0.0, 0.5, 0.97)]
    assert ratios[0] > ratios[1] > ratios[2]
    assert ratios[0] == pytest.approx(1.0, abs=0.01)


@pytest.fixture(scope="module")
def every_method_results(tmp_path_factory, tiny_model_dir):
    """One finished cell per registered method (tiny sst2, 90%), models saved, speed measured. The ONNX Runtime
    timing is left out here (two exports per cell would add ~10 s a cell); tests/test_onnx.py times it."""
    tmp = tmp_path_factory.mktemp("export")
    methods = sorted(registry.methods.entries)
    matrix = tiny_matrix(tmp, tiny_model_dir, methods=methods, sparsities=[0.9], save_models=True,
                         measure_speed=True)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bench.deploy.inference.onnx_speed", lambda *args: {"skipped": "left out by this test"})
        records = run_matrix(matrix, log=lambda line: None)
    assert [r["status"] for r in records] == ["finished"] * len(methods)
    return matrix.output, records


def test_bench_export_works_for_every_method_and_matches_the_record(every_method_results, tmp_path):
    output, records = every_method_results
    for rec in records:
        info = export_cell(output, rec["id"][:10], tmp_path / rec["cell"]["method"])
        assert info["parity"]["passed"], (rec["cell"]["method"], info["parity"])
        assert set(info["parity"]["metrics"]) == set(rec["metrics"])
        saved = json.loads((tmp_path / rec["cell"]["method"] / "export.json").read_text())
        assert saved["parity"]["passed"] and saved["sparse_bytes"] == info["sparse_bytes"]
        assert info["compaction"] == rec["export"]["compaction"], "the record's size report is what export writes"
        assert info["sparse_bytes"] == rec["export"]["sparse_bytes"]
        assert info["encoder_bytes"] == rec["export"]["encoder_bytes"] <= info["encoder_dense_bytes"]


def test_bench_export_cli_prints_structure_sizes_and_parity(every_method_results, tmp_path, capsys):
    output, records = every_method_results
    rec = next(r for r in records if r["cell"]["method"] == "movement")
    code = main(["export", str(output), rec["id"][:12], "--to", str(tmp_path / "x")])
    out = capsys.readouterr().out
    assert code == 0
    assert "heads and" in out and "FFN units removed" in out and "of the dense" in out
    assert "parity accuracy:" in out and ": ok" in out and "load_export" in out and "trust_remote_code" not in out
    assert (tmp_path / "x" / SPARSE_FILE).is_file() and (tmp_path / "x" / "tokenizer.json").is_file()

    # The model card: the Hub's model-index metadata (task, dataset, split, metrics) and the pruning facts.
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "x" / "README.md")
    (result,) = card.data.eval_results
    assert (result.task_type, result.dataset_type, result.dataset_config) == ("text-classification", "nyu-mll/glue",
                                                                              "sst2")  # fmt: skip
    assert result.metric_type == "accuracy" and result.metric_value == pytest.approx(rec["metrics"]["accuracy"])
    assert result.dataset_split == "validation[:24]"
    facts = card.data.to_dict()["prune_bench"]
    assert facts["cell_id"] == rec["id"] and facts["method"] == "movement" and facts["target_sparsity"] == 0.9
    assert facts["encoder_sparsity"] == rec["sparsity"]["encoder_sparsity"] and facts["parity_passed"] is True
    assert "movement" in card.data.tags and "load_export" in card.text


def test_parity_mismatch_exits_1(every_method_results, tmp_path, monkeypatch, capsys):
    output, records = every_method_results
    rec = records[0]
    import bench.deploy.export as export

    monkeypatch.setattr(export, "evaluate_export", lambda *a: {k: v + 1 for k, v in rec["metrics"].items()})
    assert main(["export", str(output), rec["id"], "--to", str(tmp_path / "y")]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_measure_speed_records_four_variants_at_batch_1_and_32(every_method_results):
    _, records = every_method_results
    for rec in records:
        speed = rec["speed"]
        assert set(speed["latency_ms"]) == {"batch_1", "batch_32"}
        csr = {"sparse_csr"} if rec["cell"]["method"] != "dense" else set()  # some matrix is >= 90% sparse
        for batch in speed["latency_ms"].values():
            assert set(batch) == {"dense", "finalized", "compacted", *csr}
            assert all(v["runs"] >= 20 and v["median_ms"] > 0 for v in batch.values())
        assert set(speed["speed_up"]["batch_1"]) == {"finalized", "compacted", *csr}
        assert speed["seq_length"] == 128
        assert speed["onnx"] == {"skipped": "left out by this test"}
        assert 0 < speed["flops"]["compacted"] <= speed["flops"]["dense"]


def test_export_needs_a_saved_model_and_a_known_cell(tmp_path, tiny_model_dir):
    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["magnitude"])
    (rec,) = run_matrix(matrix, log=lambda line: None)
    assert rec["export"]["file_ratio"] < 1.0 and "speed" not in rec, "size always, speed only when asked"
    with pytest.raises(BenchError, match="--save-models"):
        export_cell(matrix.output, rec["id"], tmp_path / "e")
    with pytest.raises(BenchError, match="no cell with id starting 'zzz'"):
        export_cell(matrix.output, "zzz", tmp_path / "e")
    assert main(["export", str(matrix.output), "zzz", "--to", str(tmp_path / "e")]) == 2
    with pytest.raises(BenchError, match="no results in"):
        export_cell(tmp_path / "nothing", "abc", tmp_path / "e")


def test_measure_speed_is_a_flag_and_a_checked_config_key(tmp_path):
    from bench.cli.app import build_parser
    from bench.cli.run import matrix_values
    from bench.config.yaml_config import load_config

    argv = ["run", "--methods", "dense", "--tasks", "sst2", "--sparsities", "0.5"]
    assert matrix_values(build_parser().parse_args([*argv, "--measure-speed"]))[0]["measure_speed"] is True
    assert "measure_speed" not in matrix_values(build_parser().parse_args(argv))[0]
    config = tmp_path / "matrix.yaml"
    config.write_text("methods: [dense]\ntasks: [sst2]\nsparsities: [0.5]\nmeasure_speed: often\n")
    with pytest.raises(BenchError, match="measure_speed"):
        load_config(config)
