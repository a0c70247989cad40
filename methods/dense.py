"""``dense``: plain fine-tuning with no pruning, the reference row of every leaderboard and the teacher."""

from __future__ import annotations

from torch import Tensor, nn

from bench.core.method import PruningMethod


class Dense(PruningMethod):
    """Plain fine-tuning: no masks, no scores, nothing removed.

    The matrix runs it at sparsity 0 only, whatever sparsities were asked for, and the leaderboard puts it on
    top of every table. Its finalized model is the teacher when distillation is on.
    """

    name = "dense"
    description = "no pruning: plain fine-tuning, the reference row and the distillation teacher"
    prunes = False

    def prepare(self, model: nn.Module, task=None, tokenizer=None) -> None:
        self.masks = {}

    def scores(self) -> dict[str, Tensor]:
        return {}
