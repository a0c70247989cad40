""":class:`MatrixConfig`: every option of a matrix, declared once (type, default, bounds, help, flag) and checked
once, whether it comes from ``bench run``'s flags, a ``--config`` YAML file or the Python API.

Example config file (every key is optional except the first three; a key given as ``null`` takes its default)::

    methods: [dense, magnitude, movement]    # or "all", or "dense,magnitude"
    tasks: [mnli, squad]
    sparsities: [0.5, 0.9]
    seeds: [0, 1]
    preset: quick
    model: sentence-transformers/all-MiniLM-L6-v2
    output: results/my-matrix
    budget: {epochs: 2}
    splits: {mnli: {train_split: "train[:4000]"}, "*": {eval_split: ...}}
    method_hparams: {movement: {mask_lr: 0.02}}
    distill: true
    distillation: {temperature: 2.0, alpha_distil: 0.9, alpha_ce: 0.1}
    trials: 8                      # HP-search trials per cell (0: off)
    search_space: {learning_rate: {low: 1.0e-5, high: 1.0e-4}, warmup_ratio: 0.1, mask_lr: {low: 0.005}}
    storage: postgresql://bench@db-host/bench   # default: sqlite:///OUTPUT/bench.db
    execution: {executor: ray, ray_address: "head-host:6379", cpus_per_cell: 4, gpus_per_cell: 1}

A field's flag, if it has one, is in its ``json_schema_extra`` (:func:`matrix_flags` lists them; ``bench run`` builds
its parser from that list). Bad values raise :class:`BenchError` with one line (:mod:`bench.config.messages`).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from bench.config.messages import Sources, unwrap
from bench.config.parts import BudgetOverrides, Distillation, Execution, SplitPair, flag
from bench.config.search import check_search_ranges, check_search_space
from bench.config.types import (
    FieldError,
    FolderPath,
    MethodNames,
    NonEmptyStr,
    Number,
    PresetName,
    Seeds,
    Sparsities,
    TaskNames,
    TaskOrStar,
    checked,
    describe,
)
from bench.core.errors import BenchError

MAX_TRIALS = 10_000
MAX_TIMEOUT = 30 * 24 * 3600.0  # seconds: 30 days per study
MAX_LEASE = 24 * 3600.0  # seconds: a claim is renewed every quarter of it
TRACKING_HELP = ("MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///OUTPUT/mlflow.db); 'none': no "
                 "MLflow runs")  # fmt: skip
EXPERIMENT_HELP = "MLflow experiment (default: MLFLOW_EXPERIMENT_NAME, else prune-bench)"
STORAGE_HELP = ("SQLAlchemy URL of the Optuna studies and cell queue, e.g. postgresql://user@host/db "
                "(default sqlite:///OUTPUT/bench.db)")  # fmt: skip


def _check_method_hparams(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's hyperparameters against the method's own declaration (its ``Hparams`` dataclass, which a plugin
    defines, so no static type can say it): known names, the type of the default, the method's own checks."""
    from bench.core import registry
    from bench.core.registry import unknown_name_message

    for method, hparams in value.items():
        try:
            cls = registry.methods.get(method)
        except BenchError as err:
            raise FieldError((method,), str(err)) from None
        for name, item in hparams.items():  # one at a time first, to point at the bad one
            if name not in cls.defaults:
                message = unknown_name_message("hyperparameter", name, sorted(cls.defaults),
                                               f"hyperparameters of {method!r}")  # fmt: skip
                raise FieldError((method, name), message)
            _instantiate(cls, {name: item}, (method, name))
        _instantiate(cls, hparams, (method,))
    return value


def _instantiate(cls: type, hparams: dict[str, Any], keys: tuple) -> None:
    try:
        cls(0.5, **hparams)
    except (BenchError, TypeError, ValueError) as err:  # a plugin's own checks may raise the latter two
        raise FieldError(keys, str(err)) from None


def _include_tasks(folder: Path) -> Path:
    """Register the task YAML files of ``folder`` in this process (before ``tasks`` is checked, which may name
    them); their definitions enter the ids of their cells, so the folder itself does not."""
    from bench.tasks.yaml_tasks import include

    include(folder)
    return folder


_SOURCES: ContextVar[Sources | None] = ContextVar("matrix_sources", default=None)
IncludedTasks = Annotated[FolderPath, AfterValidator(checked(_include_tasks))]
MethodHparams = Annotated[dict[str, dict[str, Any]], AfterValidator(_check_method_hparams)]
SearchSpace = Annotated[dict[str, Any], AfterValidator(checked(check_search_space))]


class MatrixConfig(BaseModel):
    """A method × task × sparsity × seed matrix with its preset, overrides and infrastructure settings.

    ``trials`` None takes the preset's number of HP-search trials per cell (0 turns the search off);
    ``search_space`` narrows (``{low, high, log}``) or fixes (a value) any shared or method knob.

    Raises:
        BenchError (from :meth:`build`): one line naming the first bad value, its flag or config line, and what is
            valid: a sparsity outside [0, 1), duplicates, unknown names ("did you mean"), a value of the wrong type
            or out of range, an unknown key.
    """

    model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=False)

    methods: MethodNames = Field(description="comma list of methods, or 'all'", json_schema_extra=flag(
        "--methods", expects="a comma list or a list of names (or 'all')"))  # fmt: skip
    include_tasks: IncludedTasks | None = Field(None, json_schema_extra=flag("--include-tasks"), description=(
        "a folder of task YAML files (bench.tasks.yaml_tasks) to register for this matrix"))  # fmt: skip
    tasks: TaskNames = Field(description="comma list of tasks or task groups (glue), or 'all'", json_schema_extra=flag(
        "--tasks", expects="a comma list or a list of names (or 'all')"))  # fmt: skip
    sparsities: Sparsities = Field(description="comma list of target sparsities in [0, 1), e.g. 0.5,0.9",
                                   json_schema_extra=flag("--sparsities"))  # fmt: skip
    seeds: Seeds = Field(default_factory=lambda: [0], description="comma list of integer seeds (default 0)",
                         json_schema_extra=flag("--seeds"))  # fmt: skip
    preset: PresetName = Field("quick", description="budget preset: quick, proxy or paper (default quick)",
                               json_schema_extra=flag("--preset"))  # fmt: skip
    model: NonEmptyStr | None = Field(None, description="Hub model id or local path (default: the preset's)",
                                      json_schema_extra=flag("--model"))  # fmt: skip
    output: FolderPath | None = Field(None, description="results folder (default results/<preset>)",
                                      json_schema_extra=flag("--output"))  # fmt: skip
    budget: BudgetOverrides = Field(default_factory=BudgetOverrides,
                                    description="overrides of the preset's budget, the same for every method")
    splits: dict[TaskOrStar, SplitPair] = Field(default_factory=dict, description=(
        "splits per task, or for every task under '*': {task or '*': {train_split: ..., eval_split: ...}}"),
        json_schema_extra={"flag_key": "*", "expects": "a mapping {task or '*': {train_split: ..., eval_split: ...}}"})
    method_hparams: MethodHparams = Field(default_factory=dict, description=(
        "hyperparameters per method, {method: {hyperparameter: value}}"),
        json_schema_extra={"expects": "a mapping {method: {hyperparameter: value}}"})  # fmt: skip
    tracking_uri: NonEmptyStr | None = Field(None, description=TRACKING_HELP, json_schema_extra=flag("--tracking-uri"))
    experiment: NonEmptyStr | None = Field(None, description=EXPERIMENT_HELP, json_schema_extra=flag("--experiment"))
    save_models: bool = Field(False, description="save finalized models to OUTPUT/models/<id>",
                              json_schema_extra=flag("--save-models"))  # fmt: skip
    measure_speed: bool = Field(False, json_schema_extra=flag("--measure-speed"), description=(
        "time CPU inference of each finalized model against the dense one (batch 1 and 32, 128 tokens); not part "
        "of the cell id"))  # fmt: skip
    distill: bool = Field(False, json_schema_extra=flag("--distill"), description=(
        "distil every pruned cell from the dense cell of its task and seed (T=2, alpha_distil 0.9, alpha_ce 0.1)"))
    distillation: Distillation = Field(default_factory=Distillation,
                                       description="distillation settings (with distill); defaults are the paper's")
    trials: int | None = Field(None, ge=0, le=MAX_TRIALS, json_schema_extra=flag("--trials"),
                               description="HP-search trials per cell (default: the preset's; 0 turns it off)")
    timeout: Number | None = Field(None, gt=0, le=MAX_TIMEOUT, json_schema_extra=flag("--timeout"), description=(
        "cap on each cell's study wall time, in seconds; not part of the cell id"))
    search_space: SearchSpace = Field(default_factory=dict, description=(
        "narrow or fix search knobs, {knob: value or {low, high, log}}"),
        json_schema_extra={"expects": "a mapping {knob: value or {low, high, log}}"})  # fmt: skip
    storage: NonEmptyStr | None = Field(None, description=STORAGE_HELP, json_schema_extra=flag("--storage"))
    lease_seconds: Number = Field(120.0, gt=0, le=MAX_LEASE, json_schema_extra=flag("--lease-seconds"),
                                  description="a dead worker's cell is taken over after this long (default 120)")
    execution: Execution = Field(default_factory=Execution, description=(
        "where cells run: in this process (default) or as Ray tasks; not part of the cell id"))  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        """A key given as None (``null`` in YAML) takes its default; a required or unknown one stays, to be refused."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items() if v is not None or k not in fields or fields[k].is_required()}

    @model_validator(mode="after")
    def _settle(self) -> MatrixConfig:
        from bench.config.presets import get_preset

        if self.output is None:
            self.output = Path("results") / self.preset
        try:
            check_search_ranges(get_preset(self.preset)["search"]["space"], self.search_space)
        except FieldError as err:
            raise FieldError(("search_space", *err.keys), err.problem) from None
        return self

    def __init__(self, **fields: Any):
        """The validated matrix of ``fields`` (the Python API: ``Matrix(methods=[...], ...)``).

        Raises:
            BenchError: the first bad value in one line; named by its flag or config line under :meth:`build`.
        """
        try:
            super().__init__(**fields)
        except ValidationError as err:
            raise BenchError((_SOURCES.get() or Sources()).message(err, type(self))) from None

    @classmethod
    def build(cls, values: dict[str, Any], sources: Sources | None = None):
        """The validated matrix of ``values`` (flags and config merged).

        Raises:
            BenchError: the first bad value, named by its flag or by its config file and line (``sources``).
        """
        if not isinstance(values, dict):
            raise BenchError(f"expected a mapping of matrix fields, got {describe(values)}")
        for key in values:
            if not isinstance(key, str):  # YAML lets any value be a key ("?" alone is a null key)
                line = (sources.lines.get((key,)) if sources is not None else None) or "?"
                where = f"config {sources.config}, line {line}: " if sources is not None and sources.config else ""
                raise BenchError(f"{where}a key must be a matrix field name, got {describe(key)}; valid: "
                                 f"{', '.join(cls.model_fields)}")  # fmt: skip
        for path, value in (sources.replaced if sources is not None else {}).items():
            check_value(path, value, Sources(config=sources.config, lines=sources.lines))
        token = _SOURCES.set(sources)  # pydantic validates through __init__, which words the message
        try:
            return cls.model_validate(values)
        finally:
            _SOURCES.reset(token)


@dataclass(frozen=True)
class Flag:
    """A ``bench run`` flag of a matrix field: ``--epochs`` sets ``("budget", "epochs")``."""

    name: str
    path: tuple
    help: str
    kind: type  # bool (a switch), int, float, or str (the field reads the text: lists, names, paths)


def matrix_flags() -> list[Flag]:
    """Every flag of :class:`MatrixConfig`, in field order: top-level fields, fields of a sub-model (``budget``) and of
    a dict of sub-models under its ``flag_key`` (``splits["*"]``)."""
    found = []
    for name, declared in MatrixConfig.model_fields.items():
        extra = declared.json_schema_extra if isinstance(declared.json_schema_extra, dict) else {}
        kind = unwrap(declared.annotation)
        if "flag" in extra:
            found.append(Flag(extra["flag"], (name,), declared.description or "", _flag_kind(kind)))
            continue
        prefix = (name,)
        if "flag_key" in extra:
            prefix, kind = (name, extra["flag_key"]), unwrap(kind.__args__[1])
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for sub, inner in kind.model_fields.items():
                more = inner.json_schema_extra if isinstance(inner.json_schema_extra, dict) else {}
                if "flag" in more:
                    found.append(Flag(more["flag"], (*prefix, sub), inner.description or "",
                                      _flag_kind(unwrap(inner.annotation))))  # fmt: skip
    return found


def _flag_kind(kind: Any) -> type:
    return kind if kind in (bool, int, float) else str


@cache
def _one_field(name: str) -> type[BaseModel]:
    declared = MatrixConfig.model_fields[name]
    config = MatrixConfig.model_config
    return create_model(f"Check_{name}", __config__=config, **{name: (declared.annotation, declared)})


def check_value(path: tuple, value: Any, sources: Sources) -> None:
    """The value at ``path`` (e.g. ``("budget", "epochs")``) checked alone, as its field would check it.

    Raises:
        BenchError: its problem, named by ``sources`` (its config line).
    """
    nested = value
    for key in reversed(path[1:]):
        nested = {key: nested}
    model = _one_field(path[0])
    try:
        model.model_validate({path[0]: nested})
    except ValidationError as err:
        raise BenchError(sources.message(err, model)) from None


def check_flag(name: str, value: Any, flag_name: str | None = None) -> Any:
    """``value`` of matrix field ``name`` checked alone (a ``bench worker`` or ``bench forget`` flag).

    Raises:
        BenchError: ``--flag-name: problem``.
    """
    model = _one_field(name)
    try:
        return getattr(model.model_validate({name: value}), name)
    except ValidationError as err:
        flag_name = flag_name or f"--{name.replace('_', '-')}"
        raise BenchError(Sources(flags={(name,): flag_name}).message(err, model)) from None
