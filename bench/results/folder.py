"""Every path of a results folder, in one place: :class:`ResultsFolder`.

A results folder (``bench run --output DIR``) holds::

    DIR/cells/<cell id>.json            one record per cell (bench.results.records)
    DIR/models/<cell id>/               the finalized model and tokenizer (--save-models)
    DIR/masks/<cell id>.safetensors     the finalized masks, one bit per prunable weight (bench.results.saved_masks)
    DIR/predictions/<cell id>.npz       per-example eval results (bench.results.predictions)
    DIR/logs/progress.log               time-stamped progress lines (bench.run.progress)
    DIR/bench.db                        the default cell queue and Optuna study (sqlite:///DIR/bench.db)
    DIR/mlflow.db                       the default MLflow tracking store (sqlite:///DIR/mlflow.db)
    DIR/mlartifacts/                    its artifacts (records, leaderboard, plots) when the store is local
    DIR/leaderboard.md, .csv            bench leaderboard
    DIR/plots/                          bench plot
    DIR/report.html                     bench report

No other module spells these names; they ask a ``ResultsFolder`` for the path. Nothing here touches the disk.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.paths import QUEUE_DB


class ResultsFolder:
    """The paths of the results folder at ``path`` (a folder that may not exist yet).

    Attributes:
        path: the folder, as given (not resolved: messages show what the user typed).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ResultsFolder({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultsFolder) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- per-cell files -----------------------------------------------------------------------------------------
    @property
    def cells(self) -> Path:
        """``DIR/cells``: the records' folder; its presence marks a results folder."""
        return self.path / "cells"

    def record(self, cell_id: str) -> Path:
        """``DIR/cells/<cell id>.json``: the cell's record."""
        return self.cells / f"{cell_id}.json"

    @property
    def models(self) -> Path:
        """``DIR/models``: the saved models' folder."""
        return self.path / "models"

    def model(self, cell_id: str) -> Path:
        """``DIR/models/<cell id>``: the cell's saved model and tokenizer (a folder)."""
        return self.models / cell_id

    @property
    def masks_dir(self) -> Path:
        """``DIR/masks``: the saved masks' folder."""
        return self.path / "masks"

    def masks(self, cell_id: str) -> Path:
        """``DIR/masks/<cell id>.safetensors``: the cell's finalized masks."""
        return self.masks_dir / f"{cell_id}.safetensors"

    @property
    def predictions_dir(self) -> Path:
        """``DIR/predictions``: the per-example results' folder."""
        return self.path / "predictions"

    def predictions(self, cell_id: str) -> Path:
        """``DIR/predictions/<cell id>.npz``: the cell's per-example eval results."""
        return self.predictions_dir / f"{cell_id}.npz"

    def artifact_ids(self) -> set[str]:
        """The cell ids that have a saved model, masks or predictions file (whether or not they have a record)."""
        found = {p.name for p in self.models.glob("*") if p.is_dir()}
        found |= {p.name[: -len(".safetensors")] for p in self.masks_dir.glob("*.safetensors")}
        return found | {p.stem for p in self.predictions_dir.glob("*.npz")}

    # ---- stores -------------------------------------------------------------------------------------------------
    @property
    def queue_db(self) -> Path:
        """``DIR/bench.db``: the default SQLite file of the cell queue and the Optuna studies."""
        return self.path / QUEUE_DB

    @property
    def storage_url(self) -> str:
        """``sqlite:///<absolute DIR>/bench.db``: the default ``--storage`` URL."""
        return f"sqlite:///{self.queue_db.resolve()}"

    @property
    def tracking_db(self) -> Path:
        """``DIR/mlflow.db``: the default SQLite file of the MLflow tracking store."""
        return self.path / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        """``sqlite:///<absolute DIR>/mlflow.db``: the default ``--tracking-uri``."""
        return f"sqlite:///{self.tracking_db.resolve()}"

    @property
    def tracking_artifacts(self) -> Path:
        """``DIR/mlartifacts``: where a local MLflow store keeps its runs' artifacts (not ``./mlruns`` in whatever
        folder the command ran from)."""
        return self.path / "mlartifacts"

    # ---- logs and outputs ---------------------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        """``DIR/logs``: log files."""
        return self.path / "logs"

    @property
    def progress_log(self) -> Path:
        """``DIR/logs/progress.log``: the progress lines of every worker, time-stamped."""
        return self.logs / "progress.log"

    @property
    def leaderboard_md(self) -> Path:
        """``DIR/leaderboard.md``."""
        return self.path / "leaderboard.md"

    @property
    def leaderboard_csv(self) -> Path:
        """``DIR/leaderboard.csv``."""
        return self.path / "leaderboard.csv"

    @property
    def plots(self) -> Path:
        """``DIR/plots``: the figures of ``bench plot``."""
        return self.path / "plots"

    @property
    def report_html(self) -> Path:
        """``DIR/report.html``: the page of ``bench report``."""
        return self.path / "report.html"
