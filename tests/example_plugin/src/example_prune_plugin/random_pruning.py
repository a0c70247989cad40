"""``random``: prune weights chosen at random, on the cubic schedule; the floor any pruning method must beat."""

import torch

from bench import PruningMethod
from bench.core.schedule import CubicScheduleHparams


class RandomPruning(PruningMethod):
    """Random pruning: per matrix, keep the top-k of scores drawn once from U(0, 1), with k on the cubic schedule
    (Zhu & Gupta 2017, eq. 1); the kept weights are fine-tuned. A sanity baseline, as in Blalock et al. 2020,
    "What is the state of neural network pruning?", section 5. No departures: nothing else is specified."""

    name = "random"
    description = "random pruning on the cubic schedule (a baseline every method must beat)"
    Hparams = CubicScheduleHparams  # warm-up and cool-down of the cubic schedule; the paper's values as defaults
    min_ramp_steps = 0  # random masks need no schedule to be what they are

    def scores(self) -> dict[str, torch.Tensor]:
        if not hasattr(self, "_scores"):  # drawn once, from the cell's seed
            generator = torch.Generator().manual_seed(self.seed)
            self._scores = {name: torch.rand(self.weight(name).shape, generator=generator) for name in self.masks}
        return self._scores
