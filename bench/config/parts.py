"""The nested settings of a matrix: budget overrides, per-task splits, distillation, where cells run, a search
knob's range.

Each is a pydantic model whose fields carry type, default, bounds and help (the flag of a field that has one is in
its ``json_schema_extra``). Every numeric field has an upper bound far above any sensible value, so that a typo
(1e9 epochs, a batch of a million) fails before any work.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bench.config.types import FieldError, NonEmptyStr, Number, describe

MAX_DISTILLATION = 100.0  # temperature and each alpha


def flag(name: str, **extra: Any) -> dict[str, Any]:
    """``json_schema_extra`` of a field that ``bench run`` also takes as the flag ``name``."""
    return {"flag": name, **extra}


class Part(BaseModel):
    """A mapping of a matrix config: unknown keys refused (named ``what`` in messages), no type coercion (``"1"``
    is not a number, ``1`` is not true)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    what: ClassVar[str] = "key"

    def given(self) -> dict[str, Any]:
        """The settings given (not None), as a plain mapping."""
        return self.model_dump(exclude_none=True)


class BudgetOverrides(Part):
    """Overrides of the preset's :class:`bench.config.cell.Budget` (same names), applied to every method alike."""

    what: ClassVar[str] = "budget setting"

    epochs: Number | None = Field(None, gt=0, le=1000, description="override the preset's epochs",
                                  json_schema_extra=flag("--epochs"))  # fmt: skip
    batch_size: int | None = Field(None, ge=1, le=65536, description="override the preset's train batch size",
                                   json_schema_extra=flag("--batch-size"))  # fmt: skip
    learning_rate: Number | None = Field(None, gt=0, le=1, json_schema_extra=flag("--learning-rate"),
                                         description="override the preset's peak learning rate of the weights")
    warmup_ratio: Number | None = Field(None, ge=0, le=1, description="fraction of steps of linear warm-up")
    weight_decay: Number | None = Field(None, ge=0, le=1, description="AdamW weight decay of the weights")
    max_length: int | None = Field(None, ge=1, le=8192, description="override the preset's tokens per feature",
                                   json_schema_extra=flag("--max-length"))  # fmt: skip
    doc_stride: int | None = Field(None, ge=0, le=8192, description="window overlap of long QA contexts, in tokens")
    eval_batch_size: int | None = Field(None, ge=1, le=65536, description="examples per evaluation batch")


class SplitPair(Part):
    """The splits of one task (or of every task, under ``"*"``); ``datasets`` split syntax with slicing."""

    train_split: NonEmptyStr | None = Field(None, json_schema_extra=flag("--train-split"),
                                            description="train split for every task, slicing allowed: 'train[:2000]'")
    eval_split: NonEmptyStr | None = Field(None, json_schema_extra=flag("--eval-split"),
                                           description="eval split for every task, e.g. 'validation_matched[:1000]'")


class Distillation(Part):
    """Distillation settings of Sanh, Wolf & Rush (2020), section 6; they enter the id of every distilled cell.

    ``L = alpha_distil · KL(softmax(z_t / T) ‖ softmax(z_s / T)) · T² + alpha_ce · L_CE`` (bench.run.distillation).
    """

    what: ClassVar[str] = "setting"

    temperature: Number = Field(2.0, gt=0, le=MAX_DISTILLATION, description="softmax temperature T")
    alpha_distil: Number = Field(0.9, ge=0, le=MAX_DISTILLATION, description="weight of the KL term")
    alpha_ce: Number = Field(0.1, ge=0, le=MAX_DISTILLATION, description="weight of the task loss")

    def to_dict(self) -> dict[str, float]:
        return self.model_dump()


EXECUTORS = ("local", "ray")
MAX_CELL_CPUS, MAX_CELL_GPUS = 1024.0, 64.0


def _executor(name: str) -> str:
    if name not in EXECUTORS:
        raise FieldError((), f"unknown executor {describe(name)}; valid: {', '.join(EXECUTORS)}")
    return name


class Execution(Part):
    """Where the cells run (none of it enters a cell id): in this process (``local``, the default: the cell queue
    in the ``storage`` database, shared with ``bench worker``), or as Ray tasks (``ray``: :mod:`bench.run.ray_executor`,
    one task per cell with the declared resources, on the cluster at ``ray_address``)."""

    what: ClassVar[str] = "execution setting"

    executor: Annotated[NonEmptyStr, AfterValidator(_executor)] = Field("local", json_schema_extra=flag(
        "--executor"), description="where cells run: local (this process, default) or ray (a Ray task per cell)")
    ray_address: NonEmptyStr | None = Field(None, json_schema_extra=flag("--ray-address"), description=(
        "with --executor ray: the cluster's head, host:port or auto (default: RAY_ADDRESS, the cluster started on "
        "this machine, else a new local one)"))  # fmt: skip
    cpus_per_cell: Number | None = Field(None, gt=0, le=MAX_CELL_CPUS, json_schema_extra=flag("--cpus-per-cell"),
                                         description="with --executor ray: CPUs a cell's task holds (default 1)")
    gpus_per_cell: Number | None = Field(None, ge=0, le=MAX_CELL_GPUS, json_schema_extra=flag("--gpus-per-cell"),
                                         description="with --executor ray: GPUs a cell's task holds (default 0)")

    @model_validator(mode="after")
    def _ray_only(self) -> Execution:
        if self.executor != "ray":
            for name in ("ray_address", "cpus_per_cell", "gpus_per_cell"):
                if getattr(self, name) is not None:
                    raise FieldError((name,), "applies to --executor ray only (the default executor is local)")
        return self

    @property
    def resources(self) -> dict[str, float]:
        """A cell task's Ray resources: ``{"num_cpus": ..., "num_gpus": ...}``."""
        cpus = 1 if self.cpus_per_cell is None else self.cpus_per_cell
        return {"num_cpus": cpus, "num_gpus": self.gpus_per_cell or 0}


class KnobRange(Part):
    """A narrowed search range of one knob (each end optional: the rest comes from the preset or the method)."""

    what: ClassVar[str] = "knob range key"

    low: Number | None = Field(None, description="lowest value")
    high: Number | None = Field(None, description="highest value")
    log: bool | None = Field(None, description="sample on a log scale (then low > 0)")

    @model_validator(mode="after")
    def _ordered(self) -> KnobRange:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise FieldError((), f"low ({self.low!r}) must not exceed high ({self.high!r})")
        if self.log and self.low is not None and self.low <= 0:
            raise FieldError(("low",), f"a log range needs low > 0, got {self.low!r}")
        return self


class IntKnobRange(KnobRange):
    """The range of an integer knob: integer ends."""

    low: int | None = Field(None, description="lowest value")
    high: int | None = Field(None, description="highest value")
