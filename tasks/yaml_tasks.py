"""Classification and regression tasks defined by a YAML file, in the spirit of lm-evaluation-harness's task configs.

A file names the dataset, its text and label columns, the label count (1: a regression head) and the metrics; no
Python is needed. ``bench run --include-tasks DIR`` registers every ``*.yaml`` file of ``DIR`` for that run; the
built-in GLUE tasks are such files (``tasks/configs/glue/``). Example, complete::

    task: boolq                       # registry name: lower-case letters, digits, _
    description: "SuperGLUE BoolQ: yes/no question answering over a passage, accuracy on validation"
    doc: "BoolQ (Clark et al. 2019). Source and departures, as a method's docstring gives them."
    group: [superglue]                # --tasks superglue runs every trainable task of the group
    dataset_path: aps/super_glue      # the Hub dataset repo (lm-eval's key names where they exist)
    dataset_name: boolq               # its config
    training_split: train
    validation_split: validation
    text_fields: [question, passage]  # one or two columns, tokenized as a pair
    label_field: label                # integer class ids (a float score when num_labels is 1)
    num_labels: 2
    label_words: ["No", "Yes"]        # optional, one per label
    metric_list: [accuracy]           # names from bench.core.metrics; the first one is the primary metric
    presets: {quick: {training_split: "train[:2000]"}}

Departures from lm-evaluation-harness: no prompt templates (``doc_to_text``) — a pruned encoder is fine-tuned on
the columns, not prompted; ``metric_list`` holds names, not ``{metric, aggregation, higher_is_better}`` mappings
(the direction comes from the metric; every one here is higher-is-better).

A task from ``--include-tasks`` carries its whole definition in its cell ids (``describe()["definition"]``), so an
edited file makes new cells and a worker without the folder can still rebuild the task from the cell; the built-in
files do not (their cells keep their ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.core.errors import BenchError

BUILTIN = Path(__file__).parent / "configs"
SPLIT_KEYS = {"training_split": "train_split", "validation_split": "eval_split"}


class TaskConfig(BaseModel):
    """One YAML task file, validated. Field meanings: the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(min_length=1)
    doc: str = ""
    group: tuple[str, ...] = ()
    dataset_path: str = Field(min_length=1)
    dataset_name: str | None = None
    training_split: str = "train"
    validation_split: str = "validation"
    text_fields: tuple[str, ...] = Field(min_length=1, max_length=2)
    label_field: str = "label"
    num_labels: int = Field(ge=1, le=10_000)
    label_words: tuple[str, ...] = ()
    metric_list: tuple[str, ...] = ("accuracy",)
    presets: dict[str, dict[str, Any]] = {}
    regression_tolerances: dict[str, float] = {}

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("must be one line")
        return value.strip()

    @field_validator("metric_list")
    @classmethod
    def _known_metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from bench.core.metrics import METRICS

        unknown = [m for m in value if m not in METRICS]
        if unknown or not value:
            raise ValueError(f"unknown metric(s) {unknown or '(none given)'}; valid: {', '.join(METRICS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if self.label_words and len(self.label_words) != self.num_labels:
            raise ValueError(f"label_words has {len(self.label_words)} words for {self.num_labels} labels")
        correlations = {"pearson", "spearman"}
        if self.num_labels == 1 and not set(self.metric_list) <= correlations:
            raise ValueError(f"a regression task (num_labels 1) reports pearson/spearman, not {self.metric_list}")
        if self.num_labels > 1 and set(self.metric_list) & correlations:
            raise ValueError("pearson/spearman need a regression task (num_labels: 1)")
        for preset, settings in self.presets.items():
            unknown = set(settings) - {*SPLIT_KEYS, "budget"}
            if unknown:
                raise ValueError(f"presets.{preset}: unknown key(s) {sorted(unknown)}; valid: training_split, "
                                 f"validation_split, budget")  # fmt: skip
        return self


def task_class(config: TaskConfig, embed: bool = True, cls_name: str | None = None, module: str = __name__) -> type:
    """A :class:`bench.tasks.glue.GlueTask` subclass built from ``config``.

    Args:
        embed: put the whole definition in ``describe()`` (and so in cell ids); False for the built-in files.
        cls_name, module: the class's name and module (default: from the task name, this module).
    """
    from bench.tasks.glue import GlueTask

    presets = {
        preset: {SPLIT_KEYS.get(key, key): value for key, value in settings.items()}
        for preset, settings in config.presets.items()
    }
    attrs = {
        "__doc__": config.doc or config.description,
        "__module__": module,
        "name": config.task,
        "description": config.description,
        "groups": config.group,
        "dataset_id": config.dataset_path,
        "dataset_config": config.dataset_name,
        "train_split": config.training_split,
        "eval_split": config.validation_split,
        "text_keys": config.text_fields,
        "label_field": config.label_field,
        "num_labels": config.num_labels,
        "label_words": config.label_words,
        "metrics": config.metric_list,
        "primary_metric": config.metric_list[0],
        "presets": presets,
        "regression_tolerances": config.regression_tolerances
        or {m: v for m, v in GlueTask.regression_tolerances.items() if m in config.metric_list},
        "definition": config.model_dump(mode="json") if embed else None,
    }
    cls_name = cls_name or "".join(part.capitalize() for part in config.task.split("_")) + "Task"
    return type(cls_name, (GlueTask,), attrs)


def read_config(path: Path) -> TaskConfig:
    """The validated :class:`TaskConfig` of one YAML file.

    Raises:
        BenchError: unreadable file, not YAML, not a mapping, or an invalid field — one line naming the file and
            the field.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise BenchError(f"cannot read task file {path}: {getattr(err, 'strerror', None) or err}") from err
    except yaml.YAMLError as err:
        raise BenchError(f"task file {path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict):
        raise BenchError(f"task file {path} must be a mapping of task fields, got {type(data).__name__}")
    return parse_config(data, str(path))


def parse_config(data: dict[str, Any], where: str) -> TaskConfig:
    """:class:`TaskConfig` from a mapping (a YAML file's or a cell's stored definition); ``where`` names it."""
    try:
        return TaskConfig(**data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown field; valid: {', '.join(TaskConfig.model_fields)}"
        raise BenchError(f"task file {where}: {field + ': ' if field else ''}{message}") from None


def load_folder(folder: Path) -> dict[str, tuple[type, Path]]:
    """``{task name: (task class, file)}`` for every ``*.yaml``/``*.yml`` file of ``folder``, sorted by file name.

    Raises:
        BenchError: ``folder`` is not a folder or has no task file, a file is invalid, or two files define one name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchError(f"{folder}: not a folder of task YAML files")
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise BenchError(f"{folder}: no *.yaml task files in it")
    found: dict[str, tuple[type, Path]] = {}
    for path in files:
        config = read_config(path)
        if config.task in found:
            raise BenchError(f"task {config.task!r} is defined twice: {found[config.task][1]} and {path}")
        found[config.task] = (task_class(config), path)
    return found


def builtin(collection: str, name: str, cls_name: str) -> type:
    """The built-in task ``name`` from ``tasks/configs/<collection>/<name>.yaml`` as the class ``cls_name`` of
    ``bench.tasks.<collection>`` (no definition in its ids, so its cells keep their ids)."""
    config = read_config(BUILTIN / collection / f"{name}.yaml")
    return task_class(config, embed=False, cls_name=cls_name, module=f"bench.tasks.{collection}")


def include(folder: Path) -> list[str]:
    """Register every task file of ``folder`` in this process (``bench run --include-tasks DIR``); their names.

    Raises:
        BenchError: as :func:`load_folder`, or a name that another plugin already registers.
    """
    from bench.core import registry

    found = load_folder(folder)
    for name, (cls, path) in found.items():
        registry.tasks.add(registry.LocalEntry(name, cls, str(path), package=f"yaml file {path}"))
    return list(found)
