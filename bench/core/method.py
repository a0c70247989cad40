"""The pruning-method interface that every plugin implements.

Lifecycle (after torch.ao.pruning's ``BaseSparsifier``: prepare → step → squash_mask)::

    method = MethodClass(sparsity=0.9, seed=0, **hparams)   # hparams default to the paper's values
    method.prepare(model, task, tokenizer)          # attach masks / scores as parametrizations
    optimizer groups += method.param_groups()       # e.g. scores with their own learning rate
    for each optimizer step t = 1..T:
        loss = task_loss + method.regularization_loss()   # when not None
        ... backward, optimizer.step() ...
        method.step(t, T, lr)                       # schedules, mask updates, proximal steps
    info = method.finalize(model)                   # bake hard masks into weights, remove parametrizations

``step(0, T)`` is also called once before the first optimizer step.

The common case needs one method, :meth:`PruningMethod.scores` (the importance of every prunable weight): a method
whose ``Hparams`` inherit :class:`~bench.core.schedule.CubicScheduleHparams` then keeps the local top-k of its scores at
the scheduled sparsity after every step, and every method's default :meth:`~PruningMethod.set_final_masks` keeps the
local top-k at the target; with :class:`~bench.core.granularity.GranularityHparams` as well, of blocks or of heads
and FFN units. Methods with rules of their own (gates, thresholds, proximal steps) override those two.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from bench.core.errors import BenchError
from bench.core.granularity import Grouping, check_granularity, grouping_for, recorded_hparams
from bench.core.masking import Mask, attach, bake, original_weight
from bench.core.prunable import PrunableWeight, prunable_weights
from bench.core.schedule import CubicScheduleHparams, PruningSchedule

if TYPE_CHECKING:
    import optuna

    from bench.core.task import Task


@dataclasses.dataclass(frozen=True)
class NoHparams:
    """The hyperparameters of a method that has none."""


class PruningMethod(ABC):
    """Base class of every pruning method.

    Class attributes:
        name: registry name (``bench ls methods``).
        description: one line for listings.
        Hparams: a frozen dataclass of the method's hyperparameters with the paper's values as defaults (constructor
            keywords override them; the instance is ``self.h``). Inherit
            :class:`~bench.core.schedule.CubicScheduleHparams` to prune on the cubic schedule.
        defaults: read-only ``{name: default}`` of ``Hparams``, derived from it (a plugin written against the older
            interface may still declare a plain ``defaults`` dict instead; it becomes its ``Hparams``).
        trains_weights: False when the pretrained weights stay frozen (only scores and the task head learn).
        prunes: False for the ``dense`` reference, which the matrix runs at sparsity 0 only.
        min_ramp_steps: the shortest pruning ramp (optimizer steps between the end of the pruning warm-up and the
            start of the cool-down) at which the method is known to give its own result rather than a collapsed
            model; cells with a shorter ramp get the ``short schedule`` verdict and a preflight warning. The
            docstring of each method says where its number comes from (a paper's schedule or a measurement).

    Args:
        sparsity: target fraction of exact zeros in the prunable set after :meth:`finalize`, in [0, 1).
        seed: the cell's seed, for methods that draw random numbers (their own ``torch.Generator``).
        **hparams: overrides of :attr:`defaults`.

    Raises:
        BenchError: sparsity outside [0, 1), a hyperparameter name not in :attr:`defaults`, or a value whose type
            does not fit its default (:func:`hparam_problem`: ints are fine where a float is the default).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Hparams: ClassVar[type] = NoHparams
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    trains_weights: ClassVar[bool] = True
    prunes: ClassVar[bool] = True
    min_ramp_steps: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("defaults")
        if declared is not None and "Hparams" not in cls.__dict__:  # the older interface: a plain dict
            fields = [(key, Any, dataclasses.field(default=value)) for key, value in declared.items()]
            cls.Hparams = dataclasses.make_dataclass(f"{cls.__name__}Hparams", fields, frozen=True)
        if not dataclasses.is_dataclass(cls.Hparams):
            raise TypeError(f"{cls.__name__}.Hparams must be a dataclass")
        cls.defaults = MappingProxyType(dataclasses.asdict(cls.Hparams()))

    def __init__(self, sparsity: float, *, seed: int = 0, **hparams: Any):
        check_sparsity(sparsity)
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise BenchError(
                f"unknown hyperparameter(s) {', '.join(unknown)} for method {self.name!r}; "
                f"valid: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        for key, value in hparams.items():
            problem = hparam_problem(self.defaults[key], value)
            if problem:
                raise BenchError(
                    f"hyperparameter {key!r} of method {self.name!r} must be {problem} "
                    f"(its default is {self.defaults[key]!r}), got {value!r} ({type(value).__name__})"
                )
        self.sparsity = float(sparsity)
        self.seed = int(seed)
        check_schedule_hparams(self.name, {**self.defaults, **hparams})
        self.h = self.Hparams(**hparams)
        self.hparams: dict[str, Any] = recorded_hparams(self.h)  # what cell ids and records hold
        self.masks: dict[str, Mask] = {}
        self.grouping = Grouping()  # where the scores live (bench.core.granularity); set by prepare
        self.weights: dict[str, PrunableWeight] = {}

    # ---- lifecycle -------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, task: Task | None = None, tokenizer: Any = None) -> None:
        """Attach a mask from :meth:`make_mask` to every prunable weight of ``model``.

        Args:
            model: a transformers model with a task head, of an architecture in the prunable table.
            task, tokenizer: the cell's task and tokenizer, for methods that need them (e.g. to initialise the
                head from label-word embeddings); None in unit tests.

        Raises:
            BenchError: the architecture is not in :data:`bench.core.prunable.ARCHITECTURES`.
        """
        found = prunable_weights(model)
        self.weights = {pw.name: pw for pw in found}
        self.grouping = grouping_for(self.h, found, model)
        self.masks = attach(found, self.make_mask)
        self.grouping.regroup(self.masks)

    @abstractmethod
    def scores(self) -> dict[str, Tensor]:
        """The importance of every prunable weight, ``{layer name: tensor of the weight's shape (out, in)}``;
        higher is kept. Empty for a method that prunes nothing. Read by the default :meth:`step` and
        :meth:`set_final_masks` (local top-k, Sanh et al. 2020 eq. 2's Top_v)."""

    def make_mask(self, weight: PrunableWeight) -> Mask:
        """The parametrization for one prunable weight (called by :meth:`prepare`); by default a hard 0/1
        :class:`~bench.core.masking.Mask`. Methods with learned scores return theirs."""
        return Mask(weight.module.weight)

    def param_groups(self) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups, e.g. ``[{"params": scores, "lr": 1e-2, "weight_decay": 0.0}]``."""
        return []

    def regularization_loss(self) -> Tensor | None:
        """A scalar added to the task loss before backward, or None."""
        return None

    def step(self, step: int, total_steps: int, lr: float | None = None) -> None:
        """Hook after optimizer step ``step`` of ``total_steps`` (and once with step=0 before training).

        By default, a method on the cubic schedule (``Hparams`` inheriting
        :class:`~bench.core.schedule.CubicScheduleHparams`) keeps the local top-k of :meth:`scores` at the scheduled
        sparsity; any other method does nothing here.

        Args:
            step: optimizer steps taken, 0 ≤ step ≤ total_steps.
            total_steps: optimizer steps in the whole run.
            lr: the weights' learning rate for the coming step (after the scheduler's update), for proximal
                methods; None when unknown.
        """
        if isinstance(self.h, CubicScheduleHparams):
            self.project_scores(self.scheduled_sparsity(step, total_steps))

    def finalize(self, model: nn.Module) -> dict[str, float]:
        """Set the final hard masks at the target sparsity, bake them into the weights, drop parametrizations.

        Returns:
            Extra facts for the cell record, e.g. ``{"sparsity_before_projection": 0.87}``.
        """
        info = self.set_final_masks()
        bake(model)
        self.masks = {}
        return info

    def set_final_masks(self) -> dict[str, float]:
        """Write the final hard masks (exactly the target sparsity where the method projects) into ``mask``; by
        default the local top-k of :meth:`scores` at the target.

        Returns:
            Extra facts for the cell record (none by default).
        """
        self.project_scores(self.sparsity)
        return {}

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        """Hyperparameters this method lets Optuna vary, sampled from ``trial`` around the paper's values."""
        return {}

    # ---- helpers for subclasses --------------------------------------------------------------------------
    def project_scores(self, sparsity: float) -> None:
        """Keep the local top-k of :meth:`scores` at ``sparsity`` in every mask (nothing when there are none)."""
        scores = self.scores()
        if scores:
            self.project_locally(scores, sparsity)

    def project_locally(self, scores: Mapping[str, Tensor], sparsity: float) -> None:
        """Set every hard mask to the top-k of its own ``scores`` at ``sparsity`` (Sanh et al. 2020's local
        Top_v), per weight or per block, head and unit (:meth:`bench.core.granularity.Grouping.local_masks`)."""
        for name, keep in self.grouping.local_masks(scores, sparsity).items():
            self.masks[name].mask.copy_(keep)

    def project_globally(self, scores: Mapping[str, Tensor], floor: float | None = None) -> None:
        """Set every hard mask to the global top-k of ``scores`` (``{layer name: scores}``) at the target sparsity,
        each matrix first keeping its top ``floor`` fraction when given
        (:func:`bench.core.masking.global_topk_masks`)."""
        for name, keep in self.grouping.global_masks(scores, self.sparsity, floor).items():
            self.masks[name].mask.copy_(keep)

    def weight(self, name: str) -> Tensor:
        """The unmasked weight (out, in) of prunable layer ``name``; a leaf parameter that the optimizer updates."""
        return original_weight(self.weights[name].module)

    def pruning_schedule(self, total_steps: int) -> PruningSchedule | None:
        """Where this method prunes in a run of ``total_steps`` optimizer steps, or None when it never prunes.

        Methods on the cubic schedule take their warm-up and cool-down from their
        :class:`~bench.core.schedule.CubicScheduleHparams`; other methods prune throughout the run (a ramp of
        ``total_steps``).
        """
        if not self.prunes:
            return None
        if isinstance(self.h, CubicScheduleHparams):
            return self.h.schedule(total_steps)
        return PruningSchedule(total_steps, 0, total_steps, 0)

    def scheduled_sparsity(self, step: int, total_steps: int) -> float:
        """Target sparsity after ``step`` steps on the cubic schedule (:meth:`pruning_schedule`, Zhu & Gupta eq. 1)."""
        schedule = self.pruning_schedule(total_steps)
        return schedule.value(step, final=self.sparsity) if schedule else 0.0


SCHEDULE_STEP_KEYS = ("warmup_steps", "cooldown_steps")


def check_schedule_hparams(method: str, hparams: Mapping[str, Any]) -> None:
    """Refuse schedule settings that no run could use: step counts that are not None or an integer >= 0, and
    fractions outside [0, 1) or adding up to 1 or more.

    Raises:
        BenchError: naming the method, the setting and the valid values.
    """
    check_granularity(hparams, method)
    for key in SCHEDULE_STEP_KEYS:
        value = hparams.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise BenchError(
                f"hyperparameter {key!r} of method {method!r} must be null (use the fraction) or an integer >= 0 "
                f"(optimizer steps), got {value!r}"
            )
    if "warmup_frac" in hparams or "cooldown_frac" in hparams:
        try:
            PruningSchedule.of(10**6, hparams.get("warmup_frac", 0.0), hparams.get("cooldown_frac", 0.0))
        except ValueError as err:
            raise BenchError(f"method {method!r}: {err}") from err


def check_sparsity(sparsity: Any) -> float:
    """``sparsity`` if it is a target sparsity: a fraction of exact zeros in [0, 1) (1 would remove every weight).
    The one place of this rule: a method's constructor and the matrix config (bench.config) both ask it.

    Raises:
        BenchError: ``sparsity must be a number in [0, 1), got ...`` (booleans, NaN and strings included).
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise BenchError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    return sparsity


def hparam_problem(default: Any, value: Any) -> str | None:
    """What ``value`` should be, as a phrase, when its type does not fit the hyperparameter's ``default``; else None.

    A bool default takes a bool; an int default an int; a float default any finite int or float; a str default a
    str. Booleans are never numbers. Other defaults (None, lists ...) take anything.
    """
    import math
    import numbers

    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, numbers.Integral):
        expected, ok = "an integer", number and isinstance(value, numbers.Integral)
    elif isinstance(default, numbers.Real):
        expected, ok = "a finite number", number and math.isfinite(value)
    elif isinstance(default, str):
        expected, ok = "a string", isinstance(value, str)
    else:
        return None
    return None if ok else expected
