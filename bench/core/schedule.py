"""The cubic sparsity schedule of Zhu & Gupta (2017), as the movement-pruning code applies it.

Zhu & Gupta, "To prune, or not to prune" (arXiv 1710.01878), eq. (1):

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * Δt))^3

Sanh et al. (2020) hold s_i for a warm-up, ramp cubically, then hold s_f for a cool-down at the end
(``schedule_threshold`` in transformers' examples/research_projects/movement-pruning, where warm-up and cool-down
are counted in optimizer steps). Here they are given either as fractions of the run (one setting scales with any
budget) or in optimizer steps (as the movement-pruning code does); steps win where both are given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PruningSchedule:
    """Where a run prunes, in optimizer steps: hold for ``warmup_steps``, ramp for ``ramp_steps``, then hold the
    final value for ``cooldown_steps``; the three add up to ``total_steps``."""

    total_steps: int
    warmup_steps: int
    ramp_steps: int
    cooldown_steps: int

    @classmethod
    def of(
        cls,
        total_steps: int,
        warmup_frac: float = 0.1,
        cooldown_frac: float = 0.2,
        warmup_steps: int | None = None,
        cooldown_steps: int | None = None,
    ) -> PruningSchedule:
        """The schedule of a run of ``total_steps`` optimizer steps.

        Args:
            total_steps: optimizer steps in the whole run, > 0.
            warmup_frac, cooldown_frac: fractions of ``total_steps`` held at the initial and at the final value,
                each in [0, 1), together < 1; used where the step counts are None.
            warmup_steps, cooldown_steps: the same in optimizer steps (>= 0), or None. A run too short for both
                keeps its warm-up and cool-down in proportion and a ramp of at least one step.

        Raises:
            ValueError: a non-positive ``total_steps``, fractions outside the ranges above, or negative steps.
        """
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if not (0 <= warmup_frac < 1 and 0 <= cooldown_frac < 1 and warmup_frac + cooldown_frac < 1):
            raise ValueError(
                f"need 0 <= warmup_frac, cooldown_frac and warmup_frac + cooldown_frac < 1, "
                f"got warmup_frac={warmup_frac}, cooldown_frac={cooldown_frac}"
            )
        for name, value in (("warmup_steps", warmup_steps), ("cooldown_steps", cooldown_steps)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        warmup = round(warmup_frac * total_steps) if warmup_steps is None else int(warmup_steps)
        cooldown = round(cooldown_frac * total_steps) if cooldown_steps is None else int(cooldown_steps)
        if warmup + cooldown >= total_steps:  # too short a run for the steps asked: shrink both, keep a ramp
            scale = (total_steps - 1) / max(1, warmup + cooldown)
            warmup, cooldown = int(warmup * scale), int(cooldown * scale)
        return cls(total_steps, warmup, total_steps - warmup - cooldown, cooldown)

    def progress(self, step: int) -> float:
        """Fraction of the ramp done after ``step`` optimizer steps, in [0, 1]."""
        if step <= self.warmup_steps:
            return 0.0
        return min(1.0, (step - self.warmup_steps) / self.ramp_steps)

    def value(self, step: int, final: float, initial: float = 0.0) -> float:
        """initial + (final - initial) · (1 - (1 - p)³), p = :meth:`progress` (Zhu & Gupta eq. 1)."""
        p = self.progress(step)
        if p >= 1.0:
            return final
        return final + (initial - final) * (1.0 - p) ** 3

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def cubic_schedule(
    step: int,
    total_steps: int,
    final: float,
    initial: float = 0.0,
    warmup_frac: float = 0.1,
    cooldown_frac: float = 0.2,
) -> float:
    """Value of the scheduled quantity (target sparsity, threshold ...) after ``step`` optimizer steps, with
    warm-up and cool-down as fractions of the run: ``PruningSchedule.of(total_steps, warmup_frac,
    cooldown_frac).value(step, final, initial)`` (:class:`PruningSchedule`; warm-up and cool-down rounded to steps).

    Raises:
        ValueError: on a non-positive ``total_steps`` or fractions outside [0, 1) or adding up to 1 or more.
    """
    return PruningSchedule.of(total_steps, warmup_frac, cooldown_frac).value(step, final, initial)


@dataclass(frozen=True)
class CubicScheduleHparams:
    """The pruning schedule's hyperparameters, shared by every method that prunes on the cubic schedule: a method's
    ``Hparams`` dataclass inherits them, and the base class's default ``step`` then keeps the top-k of the method's
    scores at the scheduled sparsity. Fractions of the run, or optimizer steps where given (steps win)."""

    warmup_frac: float = 0.1
    cooldown_frac: float = 0.2
    warmup_steps: int | None = None
    cooldown_steps: int | None = None

    def schedule(self, total_steps: int) -> PruningSchedule:
        """The :class:`PruningSchedule` of a run of ``total_steps`` optimizer steps (:meth:`PruningSchedule.of`)."""
        return PruningSchedule.of(
            total_steps, self.warmup_frac, self.cooldown_frac, self.warmup_steps, self.cooldown_steps
        )
