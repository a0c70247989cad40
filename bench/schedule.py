"""The cubic sparsity schedule of Zhu & Gupta (2017), as the movement-pruning code applies it.

Zhu & Gupta, "To prune, or not to prune" (arXiv 1710.01878), eq. (1):

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * Δt))^3

Sanh et al. (2020) hold s_i for a warm-up, ramp cubically, then hold s_f for a cool-down at the end
(``schedule_threshold`` in transformers' examples/research_projects/movement-pruning). Here warm-up and
cool-down are fractions of the total number of optimizer steps, so one setting scales with any budget.
"""

from __future__ import annotations


def cubic_schedule(
    step: int,
    total_steps: int,
    final: float,
    initial: float = 0.0,
    warmup_frac: float = 0.1,
    cooldown_frac: float = 0.2,
) -> float:
    """Value of the scheduled quantity (target sparsity, threshold ...) after ``step`` optimizer steps.

    Args:
        step: optimizer steps taken so far, 0 ≤ step (steps past ``total_steps`` return ``final``).
        total_steps: optimizer steps in the whole run, > 0.
        final: value reached at ``(1 - cooldown_frac) * total_steps`` and held after.
        initial: value held during the warm-up.
        warmup_frac: fraction of ``total_steps`` held at ``initial``, in [0, 1).
        cooldown_frac: fraction of ``total_steps`` held at ``final``, in [0, 1); warm-up + cool-down < 1.

    Returns:
        initial + (final - initial) * (1 - (1 - p)^3), with p the progress through the ramp in [0, 1].

    Raises:
        ValueError: on a non-positive ``total_steps`` or fractions outside the ranges above.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not (0 <= warmup_frac < 1 and 0 <= cooldown_frac < 1 and warmup_frac + cooldown_frac < 1):
        raise ValueError(
            f"need 0 <= warmup_frac, cooldown_frac and warmup_frac + cooldown_frac < 1, "
            f"got warmup_frac={warmup_frac}, cooldown_frac={cooldown_frac}"
        )
    start = warmup_frac * total_steps
    end = (1.0 - cooldown_frac) * total_steps
    if step <= start:
        return initial
    if step >= end:
        return final
    remaining = 1.0 - (step - start) / (end - start)
    return final + (initial - final) * remaining**3
