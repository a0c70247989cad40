"""``bench report DIR``: one self-contained ``report.html`` (no external files: plots are embedded as base64 PNG).

It holds the leaderboard (95% intervals, verdicts, the trivial baseline rows, significance marks and their legend,
with the paper reference rows that match, when the reference folder is there), the Pareto plots (metric against
remaining weights, and against the measured speed-up for cells timed with ``--measure-speed``), the
critical-difference diagram of the pruned methods over all columns (with the Friedman p and the critical
difference), the per-layer heatmaps, per-cell details (configuration, verdicts, best HP-search parameters, measured
sparsity, MLflow run id) and the failed or diverged cells with their errors and tracebacks. Every string taken from
a record (names, errors, ids, descriptions) is HTML-escaped; records that cannot be read are skipped, named on
stderr and listed on the page.
"""

from __future__ import annotations

import base64
import html
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.errors import BenchError
from bench.results import records
from bench.results.cell_record import CellRecord
from bench.results.folder import ResultsFolder

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 12px; } .muted { color: #777; }
"""


def build_report(output: Path, to: Path | None = None) -> Path:
    """Write ``OUTPUT/report.html`` (and the plots under ``OUTPUT/plots``), or, with ``to``, the page at ``to``
    only (its plots drawn in a temporary folder: the results folder is not written to); return the page's path. A
    page or plot whose content would not change is left untouched (:mod:`bench.results.figure_files`).

    Raises:
        BenchError: ``output`` holds no records.
    """
    output = Path(output)
    records.require_results(output)
    if to is None:
        return _build(output, ResultsFolder(output).report_html, None)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as plots:
        return _build(output, Path(to), Path(plots))


def _build(output: Path, path: Path, plots_to: Path | None) -> Path:
    from bench.results.figure_files import write_text_if_changed
    from bench.results.plots import CD_FILE, write_plots

    skipped: list[tuple[Path, str]] = []
    recs = records.read_records(output, skipped=skipped)
    finished = [r for r in recs if r.finished]
    def warn(line: str) -> None:  # a skipped heatmap is news; "no critical-difference diagram" is on the page
        if line.startswith("warning:"):
            print(f"bench: {line}", file=sys.stderr)

    plots = write_plots(output, recs, log=warn, to=plots_to) if finished else []
    plots += kept_heatmaps(output, plots)
    cd = [p for p in plots if p.name == CD_FILE]
    sections = [
        f"<h1>prune-bench report: {html.escape(output.name)}</h1>",
        f"<p class=muted>{len(recs)} cells: {len(finished)} finished, {len(recs) - len(finished)} not.</p>",
        skipped_html(skipped),
        "<h2>Leaderboard</h2>", leaderboard_html(recs, output),
        "<h2>Plots</h2>", *(image_html(p) for p in plots if p.name != CD_FILE),
        "<h2>Methods over all columns</h2>", ranks_html(recs, cd[0] if cd else None),
        "<h2>Cells</h2>", cells_html(recs),
        "<h2>Failures</h2>", failures_html(recs),
    ]  # fmt: skip
    page = f"<!doctype html><html><head><meta charset=utf-8><title>prune-bench: {html.escape(output.name)}</title>"
    page += f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_if_changed(path, page)
    return path


def kept_heatmaps(output: Path, written: list[Path]) -> list[Path]:
    """Heatmap images already in ``OUTPUT/plots`` that this run did not redraw (their cells' mask files are not
    here, e.g. not committed): the report keeps showing them rather than dropping them."""
    folder = ResultsFolder(output).plots
    drawn = {p.name for p in written}
    return sorted(p for p in folder.glob("heatmap-*.png") if p.name not in drawn) if folder.is_dir() else []


def skipped_html(skipped: list[tuple[Path, str]]) -> str:
    """The records left out because they cannot be read, each with its problem; ``""`` when none."""
    if not skipped:
        return ""
    items = "".join(f"<li><code>{html.escape(str(path))}</code>: {html.escape(problem)}</li>"
                    for path, problem in skipped)  # fmt: skip
    return f"<p><b>{len(skipped)} record(s) skipped</b> (they cannot be read):</p><ul>{items}</ul>"


def leaderboard_html(recs: list[dict[str, Any]], output: Path | None = None) -> str:
    """The long board of ``recs`` as an HTML table with its legend; marks are tested on ``output``'s predictions
    (None: nothing is tested)."""
    from bench.results import reference
    from bench.results.leaderboard import board as ranked
    from bench.results.leaderboard import collect
    from bench.results.render import render_board, with_reference
    from bench.results.significance import load_arrays

    cells = collect(recs)
    if cells.empty:
        return "<p>(no finished cells)</p>"
    board = ranked(cells, load_arrays(output, cells) if output is not None else None)
    try:
        board = with_reference(board, reference.matching(reference.load(), cells))
    except BenchError:
        pass  # no reference folder next to this installation: measured rows only
    return render_board(board, "html")


def ranks_html(recs: list[dict[str, Any]], diagram: Path | None) -> str:
    """The critical-difference diagram with the Friedman p and the critical difference, or why there is none."""
    from bench.results.leaderboard import collect, summarize
    from bench.results.significance import critical_difference, friedman_text

    cells = collect(recs)
    result, reason = critical_difference(summarize(cells)) if not cells.empty else (None, "no finished cells")
    if result is None or diagram is None:
        return f"<p class=muted>{html.escape(reason or 'no diagram')}.</p>"
    ranks = ", ".join(f"{m} {r:.2f}" for m, r in result["mean_ranks"].items())
    return (
        image_html(diagram) + f"<p>Friedman test over {result['n_blocks']} task@sparsity columns: p = "
        f"{friedman_text(result['friedman_p'])}; Nemenyi critical difference {result['critical_difference']:.2f} ranks "
        f"(α = {result['alpha']}). Mean ranks (1 = best, on the row means): {html.escape(ranks)}. Methods joined by "
        "a bar are not significantly different.</p>"
    )


def image_html(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def cells_html(recs: list[CellRecord]) -> str:
    """The per-cell table (configuration, verdicts, best HP-search parameters, measured sparsity, MLflow run id) of
    ``recs`` (:func:`bench.results.records.read_records`), HTML-escaped."""
    from bench.results.verdicts import labels, of_record

    rows = []
    for rec in recs:
        cell, search = rec.cell, rec.search or {}  # an unset optional field reads as a false value (ABSENT)
        config = {k: cell.get(k) for k in ("model", "budget", "method_hparams", "distillation")}
        verdict = "; ".join(labels(of_record(rec))) if rec.finished else ""
        rows.append({
            "cell": rec.id[:12], "method": cell["method"], "task": cell["task"]["name"],
            "target": f"{cell['sparsity']:.0%}", "seed": cell["seed"], "status": rec.status, "verdicts": verdict,
            "measured": f"{rec.sparsity['encoder_sparsity']:.2%}" if rec.sparsity else "",
            "params left": f"{rec.sparsity['remaining_params']:,}" if rec.sparsity else "",
            "best params": json.dumps(search.get("best_params")) if search else "",
            "trials": search.get("n_trials", 0), "MLflow run": rec.mlflow_run_id or "",
            "config": json.dumps(config, sort_keys=True),
        })  # fmt: skip
    return pd.DataFrame(rows).to_html(index=False, escape=True)


def failures_html(recs: list[CellRecord]) -> str:
    """The failed and diverged cells of ``recs`` with their errors and tracebacks (folded), HTML-escaped; "None."
    when every cell finished."""
    failed = [r for r in recs if not r.finished]
    if not failed:
        return "<p>None.</p>"
    parts = []
    for rec in failed:
        cell = rec.cell
        # optional fields through the mapping view: an unset one is then None/"" instead of the ABSENT marker
        step = f" at step {rec['diverged_step']}" if rec.get("diverged_step") is not None else ""
        title = f"{cell['method']} / {cell['task']['name']} @ {cell['sparsity']:.0%} seed {cell['seed']}"
        parts.append(
            f"<details><summary><b>{html.escape(rec.status + step)}</b>: {html.escape(title)} "
            f"({html.escape(rec.id[:12])}): {html.escape(str(rec.get('error', '')))}</summary>"
            f"<pre>{html.escape(str(rec.get('traceback') or 'no traceback'))}</pre></details>"
        )
    return "".join(parts)
