"""Distillation loss against hand formulas (Hinton et al. 2015, with the movement-pruning settings)."""

from __future__ import annotations

import pytest


def test_distillation_loss_matches_hand_formula():
    import torch
    import torch.nn.functional as F
    from transformers.modeling_outputs import SequenceClassifierOutput

    from bench.run.distillation import Distillation, distillation_loss

    student, teacher = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    ce = torch.tensor(0.7)
    got = distillation_loss(SequenceClassifierOutput(logits=student), SequenceClassifierOutput(logits=teacher), ce,
                            Distillation())  # fmt: skip
    p_t, p_s = F.softmax(teacher / 2, -1), F.softmax(student / 2, -1)
    kl = (p_t * (p_t.log() - p_s.log())).sum() * 4
    assert got.item() == pytest.approx(0.9 * kl.item() + 0.1 * 0.7, rel=1e-6)


def test_distillation_loss_for_qa_averages_start_and_end_terms():
    import torch
    from transformers.modeling_outputs import QuestionAnsweringModelOutput

    from bench.run.distillation import Distillation, distillation_loss, kl_term

    torch.manual_seed(0)
    s_start, s_end, t_start, t_end = (torch.randn(2, 7) for _ in range(4))
    student = QuestionAnsweringModelOutput(start_logits=s_start, end_logits=s_end)
    teacher = QuestionAnsweringModelOutput(start_logits=t_start, end_logits=t_end)
    got = distillation_loss(student, teacher, torch.tensor(1.5), Distillation(temperature=3.0, alpha_distil=0.5,
                                                                              alpha_ce=0.5))  # fmt: skip
    kl = 0.5 * (kl_term(s_start, t_start, 3.0) + kl_term(s_end, t_end, 3.0))
    assert got.item() == pytest.approx(0.5 * kl.item() + 0.75, rel=1e-6)
    assert kl_term(s_start, s_start, 3.0).item() == pytest.approx(0.0, abs=1e-6)
