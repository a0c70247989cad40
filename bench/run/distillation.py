"""Knowledge distillation from the dense fine-tuned model, as in the movement-pruning runs.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network", arXiv 1503.02531, with the
settings of Sanh, Wolf & Rush (2020), section 6 ("Distillation further boosts performance"):

    L = α_distil · KL(softmax(z_t / T) ‖ softmax(z_s / T)) · T² + α_ce · L_CE,   T = 2, α_distil = 0.9, α_ce = 0.1.

For extractive QA the KL term is the mean of the start-logit and end-logit terms.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.config.parts import Distillation


def kl_term(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)) · T², averaged over the batch.

    Args:
        student_logits, teacher_logits: (batch, classes) or (batch, sequence) for QA start/end logits.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature**2


def distillation_loss(outputs: Any, teacher_outputs: Any, task_loss: Tensor, settings: Distillation) -> Tensor:
    """α_distil · KL + α_ce · task loss for classification (``logits``) or QA (``start_logits``, ``end_logits``)."""
    if getattr(outputs, "logits", None) is not None:
        kl = kl_term(outputs.logits, teacher_outputs.logits, settings.temperature)
    else:
        kl = 0.5 * (
            kl_term(outputs.start_logits, teacher_outputs.start_logits, settings.temperature)
            + kl_term(outputs.end_logits, teacher_outputs.end_logits, settings.temperature)
        )
    return settings.alpha_distil * kl + settings.alpha_ce * task_loss


@torch.no_grad()
def teacher_forward(teacher: torch.nn.Module, inputs: dict[str, Any]) -> Any:
    """The teacher's outputs on the student's batch, without labels and without gradients."""
    labels = {"labels", "start_positions", "end_positions"}
    return teacher(**{k: v for k, v in inputs.items() if k not in labels})
