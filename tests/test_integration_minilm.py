"""`bench run` end to end on the real MiniLM and real MNLI/SQuAD data (a few dozen examples), through to
leaderboard.md, and `bench export` of two of its cells. Needs the Hub or the HF_HUB_CACHE mirror."""

from __future__ import annotations

import json
import textwrap

import pytest

from bench.cli.app import main
from bench.results import records
from tests.conftest import needs_minilm

pytestmark = [pytest.mark.integration, needs_minilm]

CONFIG = textwrap.dedent(
    """
    methods: dense,magnitude,movement
    tasks: [mnli, squad]
    sparsities: [0.9]
    preset: quick
    budget: {epochs: 1, batch_size: 8}
    splits:
      mnli: {train_split: "train[:32]", eval_split: "validation_matched[:32]"}
      squad: {train_split: "train[:24]", eval_split: "validation[:16]"}
    """
)


def test_bench_run_on_minilm_writes_records_and_leaderboard(tmp_path, capsys):
    config = tmp_path / "matrix.yaml"
    config.write_text(CONFIG)
    output = tmp_path / "run"
    assert main(["run", "--config", str(config), "--output", str(output), "--save-models"]) == 0
    printed = capsys.readouterr().out

    recs = records.read_records(output)
    assert len(recs) == 6 and all(r["status"] == "finished" for r in recs)
    for rec in recs:
        assert rec["cell"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert abs(rec["sparsity"]["encoder_sparsity"] - rec["cell"]["sparsity"]) <= 0.005
        assert rec["sparsity"]["total_params"] > 22_000_000
    squad = [r for r in recs if r["cell"]["task"]["name"] == "squad"]
    assert all(set(r["metrics"]) == {"exact_match", "f1"} and r["primary_metric"] == "f1" for r in squad)

    board = (output / "leaderboard.md").read_text().split("\n\n")[0]
    assert board in printed, "bench run prints the leaderboard"
    assert "mnli accuracy↑ @ 90%" in board and "squad f1↑ @ 90%" in board
    rows = [line.split("|")[1].strip() for line in board.splitlines()[2:] if line.startswith("|")]
    assert rows == ["dense", "baseline", "magnitude", "movement"]
    assert board.count("sp 90.0%") == 4 and board.count("sp 0.0%") == 2

    # The leaderboard command renders the same table from the records alone.
    assert main(["leaderboard", str(output)]) == 0
    assert capsys.readouterr().out.strip() == board.strip()
    assert json.loads((output / "cells" / f"{recs[0]['id']}.json").read_text())["id"] == recs[0]["id"]

    # bench export: the compacted, sparse model reloads and gives the record's metrics (SQuAD: EM and F1 both).
    for method, task in (("movement", "squad"), ("magnitude", "mnli")):
        rec = next(r for r in recs if r["cell"]["method"] == method and r["cell"]["task"]["name"] == task)
        folder = tmp_path / f"export-{method}-{task}"
        assert main(["export", str(output), rec["id"][:12], "--to", str(folder)]) == 0
        info = json.loads((folder / "export.json").read_text())
        assert info["parity"]["passed"] and set(info["parity"]["metrics"]) == set(rec["metrics"])
        assert info["sparse_bytes"] < 0.7 * info["dense_bytes"], "90% sparse encoder: the file shrinks"
