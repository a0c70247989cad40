"""``smp``: Static Model Pruning (Jiang, Wang, Zhuang, Xie & Xia 2022, "Pruning Pre-trained Language Models
Without Fine-Tuning", arXiv 2210.06210; reference code github.com/kongds/SMP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from bench.core.errors import BenchError
from bench.core.masking import Mask, StraightThroughMask, topk_mask
from bench.core.method import PruningMethod
from bench.core.prunable import PrunableWeight
from bench.core.schedule import CubicScheduleHparams, PruningSchedule

if TYPE_CHECKING:
    import optuna

if TYPE_CHECKING:
    from bench.core.task import Task

VARIANTS = ("L", "S")


class SMP(PruningMethod):
    """Static Model Pruning: the pretrained weights stay frozen; only mask scores S (and the task head) learn.

    Paper equations (Jiang et al. 2022, section 3) and what implements them here:
      * masked forward W' = W ⊙ M with M = Top_v(S) and a straight-through gradient, so that
        ∂L/∂S = W ⊙ ∂L/∂W' and S accumulates −W·∂L/∂W' ("the mask stays in the gradient", the first-order
        movement signal of Sanh et al. 2020 eq. 3-4 without any weight update):
        :class:`bench.core.masking.StraightThroughMask`, whose hard ``mask`` buffer :meth:`step` recomputes;
      * SMP-L (``variant="L"``): local top-v per weight matrix;
      * SMP-S (``variant="S"``, default, the paper's proposed masking function and the setting of its released
        checkpoints): per-layer budgets v^l = R(S^l)·L / Σ_l' R(S^l') · v with R(S^l) the mean of σ(S^l/p)
        (:meth:`layer_budgets`). "Layer" follows the reference code (``set_magnitude_topk_threshold``): the
        budgets are shared out among the L matrices of one *role* (Q, K, V, attention output, FFN in, FFN out)
        across the encoder layers, so each role, and hence the whole prunable set, keeps exactly v overall;
        p is ``budget_temperature`` (code: 1, or 3-4 at low sparsity);
      * objective L_CE + λ_t·R(S) with λ_R = 400 (:meth:`regularization_loss`). R(S) is normalised as in the
        code's ``regularization(mode="l1")``: the mean over prunable matrices of Σσ(S)/numel. λ_t ramps cubically
        from 0 to λ_R over the whole run, λ_t = λ_R·(1 − (1 − t/T)³): the code (``SMPTrainer.training_step`` in
        ``smp_trainer.py``) calls ``schedule_threshold`` a second time with a dummy threshold going 0 → 0.1 and
        zero warm-ups (its scripts set ``--warmup_ratio 0``) and uses that λ, not the one of the sparsity schedule,
        which reaches its target earlier (T − 6×5,000 steps on GLUE);
      * v follows the cubic schedule of Zhu & Gupta with no warm-up (code: ``--initial_warmup 0``);
      * scores start at 0 (code: ``--mask_init constant --mask_scale 0``) and learn with AdamW at lr 2e-2,
        weight decay 0 (code: ``--mask_scores_learning_rate 2e-2``);
      * task head initialised from the input embeddings of the task's label words (MNLI: Yes/Maybe/No), bias 0
        (:func:`init_head_from_label_words`). A word's row is the mean of its sub-token embeddings; the code
        encodes ``" " + word`` and requires a single token, which gives the same row.

    ``min_ramp_steps`` = 22,600: the sparsity ramp of the authors' SQuAD script (``run_squad.sh``: 10 epochs of 2,770
    steps at batch 32, the final sparsity reached 5,000 steps before the end, no warm-up); its GLUE ramps are longer.

    Departures:
      * head: the reference code scores the label words with BERT's full pretrained MLM head (transform +
        tied decoder + bias) at a [MASK]/[CLS] position and keeps it frozen. Here the benchmark's
        sequence-classification head (pooler → ``classifier``) is used: only its output rows come from the
        label-word embeddings, and the head keeps training, as the runner trains every frozen-weight
        method's task head. For question answering there are no label words (the code scored "Yes"/"No" with
        the MLM head as start/end logits): ``qa_outputs`` keeps its random initialisation.
      * no knowledge distillation (the paper's best rows use a teacher).
      * schedule lengths are fractions of the run: no warm-up, cool-down ``cooldown_frac`` = 0.2 (the code
        holds the final sparsity for 6×5,000 steps on GLUE, ~40% of a 12-epoch MNLI run, and 5,000 steps on
        SQuAD, ~18%), or optimizer steps (``warmup_steps``/``cooldown_steps``) where given;
      * masks are recomputed once per optimizer step (after it), not in every forward pass;
      * SMP-S budgets are capped at the matrix size and the overflow is shared out among the other matrices
        of the role (the code silently keeps a capped matrix dense and misses the target), then rounded to
        whole weights so each role keeps exactly its share; the final masks hit the target exactly.
    """

    name = "smp"
    min_ramp_steps = 22_600
    description = "static model pruning: frozen weights, top-k on learned scores S += -W*dL/dW' (Jiang et al. 2022)"

    @dataclass(frozen=True)
    class Hparams(CubicScheduleHparams):
        warmup_frac: float = 0.0
        variant: str = "S"
        mask_lr: float = 2e-2
        lambda_r: float = 400.0
        score_init: float = 0.0
        budget_temperature: float = 1.0

    trains_weights = False

    def __init__(self, sparsity: float, **hparams: Any):
        super().__init__(sparsity, **hparams)
        if self.h.variant not in VARIANTS:
            raise BenchError(f"smp: variant must be one of {', '.join(VARIANTS)}, got {self.h.variant!r}")
        self._lambda = 0.0
        self._head_from_label_words = False

    def prepare(self, model: nn.Module, task: Task | None = None, tokenizer: Any = None) -> None:
        super().prepare(model, task, tokenizer)
        self._lambda, self._head_from_label_words = 0.0, False
        label_words = tuple(getattr(task, "label_words", ()) or ())
        is_classification = getattr(task, "head", None) == "sequence-classification"
        if is_classification and label_words and tokenizer is not None:
            init_head_from_label_words(model, label_words, tokenizer)
            self._head_from_label_words = True

    def make_mask(self, weight: PrunableWeight) -> Mask:
        return StraightThroughMask(weight.module.weight, init=self.h.score_init)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.scores().values()), "lr": self.h.mask_lr, "weight_decay": 0.0}]

    def scores(self) -> dict[str, Tensor]:
        return {name: mask.scores for name, mask in self.masks.items()}

    def regularization_loss(self) -> Tensor | None:
        """λ_t·R(S), R(S) = mean over matrices of Σσ(S)/numel; None while λ_t is 0."""
        if self._lambda == 0.0 or not self.masks:
            return None
        per_matrix = [torch.sigmoid(mask.scores).mean() for mask in self.masks.values()]
        return self._lambda * torch.stack(per_matrix).mean()

    def step(self, step: int, total_steps: int, lr: float | None = None) -> None:
        whole_run = PruningSchedule(total_steps, 0, total_steps, 0)  # the code's λ ramp: cubic over the whole run
        self._lambda = whole_run.value(step, final=self.h.lambda_r)
        self._update(self.scheduled_sparsity(step, total_steps))

    def set_final_masks(self) -> dict[str, float]:
        self._update(self.sparsity)
        return {"head_from_label_words": float(self._head_from_label_words)}

    # ---- masks -----------------------------------------------------------------------------------------
    def _update(self, sparsity: float) -> None:
        if self.h.variant == "L":
            self.project_scores(sparsity)
            return
        for name, keep in self.layer_budgets(sparsity).items():
            mask = self.masks[name]
            n = mask.scores.numel()
            mask.mask.copy_(topk_mask(mask.scores, (n - keep) / n, (self.grouping.warm, name)))

    def layer_budgets(self, sparsity: float) -> dict[str, int]:
        """SMP-S: weights each matrix keeps at ``sparsity``, {module name: count}.

        Within each role, matrix l gets a share of the role's kept weights proportional to R(S^l)·numel, with
        R(S^l) = mean σ(S^l / p); for equal-sized matrices that is v^l = R(S^l)·L / Σ_l' R(S^l')·v.
        """
        budgets: dict[str, int] = {}
        for names in self._roles().values():
            scores = [self.masks[name].scores.detach() for name in names]
            sizes = [s.numel() for s in scores]
            importance = [float(torch.sigmoid(s / self.h.budget_temperature).mean()) for s in scores]
            keep = sum(sizes) - round(sparsity * sum(sizes))
            budgets.update(zip(names, allocate(importance, sizes, keep), strict=True))
        return budgets

    def _roles(self) -> dict[str, list[str]]:
        roles: dict[str, list[str]] = {}
        for name, pw in self.weights.items():
            roles.setdefault(pw.role, []).append(name)
        return roles

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "mask_lr": trial.suggest_float("mask_lr", 5e-3, 5e-2, log=True),
            "lambda_r": trial.suggest_float("lambda_r", 100.0, 1600.0, log=True),
        }


def allocate(importance: Sequence[float], sizes: Sequence[int], keep: int) -> list[int]:
    """Share ``keep`` kept weights among matrices in proportion to ``importance[i] * sizes[i]``.

    No matrix gets more than its size: a capped matrix's overflow goes to the others, in proportion again.
    Fractions are rounded by largest remainder, so the counts sum to exactly ``keep``.

    Raises:
        ValueError: ``keep`` outside [0, Σ sizes] or a non-positive importance.
    """
    if not 0 <= keep <= sum(sizes):
        raise ValueError(f"keep={keep} outside [0, {sum(sizes)}]")
    if any(w <= 0 for w in importance):
        raise ValueError("importances must be positive")
    capped: set[int] = set()
    while True:
        free = [i for i in range(len(sizes)) if i not in capped]
        budget = keep - sum(sizes[i] for i in capped)
        total = sum(importance[i] * sizes[i] for i in free)
        quotas = {i: budget * importance[i] * sizes[i] / total for i in free} if free else {}
        over = [i for i in free if quotas[i] > sizes[i]]
        if not over:
            break
        capped.update(over)
    counts = [sizes[i] if i in capped else int(quotas[i]) for i in range(len(sizes))]
    remainder = keep - sum(counts)
    by_fraction = sorted(free, key=lambda i: quotas[i] - int(quotas[i]), reverse=True)
    for i in by_fraction[:remainder]:
        counts[i] = min(sizes[i], counts[i] + 1)
    return counts


# ---- head initialisation from label words ------------------------------------------------------------------
def init_head_from_label_words(model: nn.Module, label_words: Sequence[str], tokenizer: Any) -> None:
    """Set the classifier's output rows to the label words' input embeddings and its bias to 0.

    Row i is the mean input embedding of the sub-tokens of ``" " + label_words[i]`` (the leading space gives
    byte-level BPE tokenizers the word-initial token; WordPiece ignores it).

    Raises:
        BenchError: no linear output layer found, or its shape does not match (labels, hidden size).
    """
    layer = classifier_output_layer(model)
    embeddings = model.get_input_embeddings().weight
    expected = (len(label_words), embeddings.shape[1])
    if tuple(layer.weight.shape) != expected:
        raise BenchError(
            f"smp: classifier weight has shape {tuple(layer.weight.shape)}, but {len(label_words)} label words "
            f"of embedding size {embeddings.shape[1]} give {expected}"
        )
    rows = [embeddings[label_word_ids(tokenizer, word)].mean(dim=0) for word in label_words]
    with torch.no_grad():
        layer.weight.copy_(torch.stack(rows).to(layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.zero_()


def label_word_ids(tokenizer: Any, word: str) -> list[int]:
    """Token ids of one label word, without special tokens."""
    ids = list(tokenizer(" " + word, add_special_tokens=False)["input_ids"])
    if not ids:
        raise BenchError(f"smp: label word {word!r} tokenizes to nothing")
    return ids


def classifier_output_layer(model: nn.Module) -> nn.Linear:
    """The linear layer that produces the classification logits (BERT/DistilBERT ``classifier``, RoBERTa/MPNet
    ``classifier.out_proj``)."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    out_proj = getattr(head, "out_proj", None)
    if isinstance(out_proj, nn.Linear):
        return out_proj
    raise BenchError(f"smp: no linear classifier found on {type(model).__name__} to initialise from label words")
