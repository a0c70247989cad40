"""``magnitude``: gradual magnitude pruning on the cubic schedule.

Zhu & Gupta (2017), "To prune, or not to prune: exploring the efficacy of pruning for model compression",
arXiv 1710.01878, eq. (1) for the schedule; used as the magnitude baseline by Sanh, Wolf & Rush (2020),
"Movement Pruning", section 4 ("magnitude pruning ... local, per matrix").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from bench.core.granularity import GranularityHparams
from bench.core.method import PruningMethod
from bench.core.schedule import CubicScheduleHparams

if TYPE_CHECKING:
    import optuna


class Magnitude(PruningMethod):
    """Gradual magnitude pruning: per matrix, M = Top_v(|W|) with v on the cubic schedule; W is fine-tuned.

    Implements Movement Pruning (Sanh et al. 2020) eq. (2) with importance scores S = |W| and the local
    (per-matrix) top-v selection; v follows Zhu & Gupta eq. (1) with warm-up/cool-down as fractions of the run.

    Departures: masks are recomputed after every optimizer step (Zhu & Gupta recompute every Δt steps);
    warm-up/cool-down are fractions of total steps, or optimizer steps (``warmup_steps``/``cooldown_steps``)
    where given.

    ``granularity`` (:mod:`bench.core.granularity`; Lagunas, Charlaix, Sanh & Rush 2021, "Block Pruning For Faster
    Transformers", arXiv 2109.04838, section 3 and eq. 1): ``block`` ranks square blocks and ``structured`` ranks
    attention heads (Q/K/V rows and O columns) and FFN units (FFN-in row and FFN-out column), each scored by the
    mean |W| over the group (pooled over all the matrices a head or unit spans); the paper uses movement scores,
    not magnitude. Groups are pruned per matrix (blocks) or per layer (heads first, to the nearest head, then FFN
    units up to the layer's target) on the same cubic schedule.

    ``min_ramp_steps`` = 0 (none declared): gradual magnitude pruning keeps its own result at short ramps. Measured
    here on SST-2 with MiniLM at 90% (results/readme-budget): 79.7% [78.9, 80.5] over 3 seeds with an 840-step ramp,
    against dense 87.5%; at the quick preset's 44-step ramp it still keeps 72% at 90%.
    """

    name = "magnitude"
    description = "gradual magnitude pruning, local top-k of |W| on the cubic schedule (Zhu & Gupta 2017)"

    @dataclass(frozen=True)
    class Hparams(CubicScheduleHparams, GranularityHparams):
        """The cubic schedule's settings, and ``granularity``/``block_size`` (:mod:`bench.core.granularity`)."""

    def scores(self) -> dict[str, Tensor]:
        return {name: self.weight(name).detach().abs() for name in self.masks}

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {"cooldown_frac": trial.suggest_float("cooldown_frac", 0.1, 0.3)}
