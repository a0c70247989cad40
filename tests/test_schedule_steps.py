"""Pruning schedules in optimizer steps, preset schedules, and search spaces whose knobs change the result."""

from __future__ import annotations

import pytest
import torch
from bench.methods.l0 import L0
from bench.methods.magnitude import Magnitude
from bench.methods.movement import Movement
from bench.methods.soft_movement import SoftMovement

from bench.core.errors import BenchError
from bench.core.schedule import PruningSchedule, cubic_schedule


def test_fractions_give_the_same_values_as_the_fraction_schedule():
    schedule = PruningSchedule.of(1000, 0.1, 0.2)
    assert (schedule.warmup_steps, schedule.ramp_steps, schedule.cooldown_steps) == (100, 700, 200)
    for step in (0, 100, 101, 450, 799, 800, 1000):
        assert schedule.value(step, 0.9) == pytest.approx(cubic_schedule(step, 1000, 0.9))


def test_steps_win_over_fractions_and_a_short_run_keeps_a_ramp():
    schedule = PruningSchedule.of(10_000, 0.1, 0.3, warmup_steps=1500)
    assert (schedule.warmup_steps, schedule.cooldown_steps, schedule.ramp_steps) == (1500, 3000, 5500)
    assert PruningSchedule.of(10_000, warmup_steps=0, cooldown_steps=2000).ramp_steps == 8000
    short = PruningSchedule.of(100, warmup_steps=1500, cooldown_steps=2000)
    assert short.ramp_steps >= 1 and short.total_steps == 100
    assert short.warmup_steps + short.ramp_steps + short.cooldown_steps == 100
    assert short.value(100, 0.9) == 0.9


def test_methods_schedule_in_steps_and_refuse_bad_step_counts():
    method = Magnitude(0.9, warmup_steps=1500, cooldown_frac=0.3)
    assert method.pruning_schedule(8420).to_dict() == {"total_steps": 8420, "warmup_steps": 1500,
                                                       "ramp_steps": 4394, "cooldown_steps": 2526}
    assert method.scheduled_sparsity(1500, 8420) == 0.0 and method.scheduled_sparsity(5894, 8420) == 0.9
    assert SoftMovement(0.9, warmup_steps=10).schedule(10, 100)[0] == 0.0
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(BenchError, match="warmup_steps"):
            Movement(0.5, warmup_steps=bad)
    with pytest.raises(BenchError, match="warmup_frac"):
        Magnitude(0.5, warmup_frac=0.6, cooldown_frac=0.5)


def test_methods_without_a_cubic_schedule_prune_over_the_whole_run():
    assert L0(0.9).pruning_schedule(300).to_dict() == {"total_steps": 300, "warmup_steps": 0, "ramp_steps": 300,
                                                       "cooldown_steps": 0}  # fmt: skip


def test_the_proxy_preset_gives_every_method_that_has_them_the_same_schedule():
    from bench.config.matrix import Matrix, expand

    cells = expand(Matrix(methods=["dense", "magnitude", "movement", "l0"], tasks=["sst2"], sparsities=[0.9],
                          preset="proxy", method_hparams={"movement": {"warmup_steps": 100}}))  # fmt: skip
    by_method = {c.method: c for c in cells}
    assert by_method["magnitude"].method_hparams["warmup_steps"] == 1500
    assert by_method["magnitude"].method_hparams["cooldown_frac"] == 0.3
    assert by_method["movement"].method_hparams["warmup_steps"] == 100, "the matrix's own setting wins"
    assert "warmup_steps" not in by_method["l0"].method_hparams
    budget = by_method["magnitude"].budget
    assert (budget.epochs, budget.batch_size, budget.max_length, budget.learning_rate) == (2, 16, 64, 1e-4)
    assert by_method["magnitude"].task["train_split"] == "train"


def train_masks(model, mask_lr: float, steps: int = 6) -> dict[str, torch.Tensor]:
    """A few AdamW steps of movement on random token batches, clipped over weights and scores together."""
    torch.manual_seed(0)
    method = Movement(0.5, mask_lr=mask_lr, warmup_frac=0.0, cooldown_frac=0.0)
    method.prepare(model)
    scores = {id(p) for group in method.param_groups() for p in group["params"]}
    weights = [p for p in model.parameters() if id(p) not in scores]
    optimizer = torch.optim.AdamW([{"params": weights, "lr": 1e-3, "weight_decay": 0.0}, *method.param_groups()])
    method.step(0, steps)
    for step in range(1, steps + 1):
        inputs = torch.randint(5, 100, (8, 12))
        labels = torch.randint(0, 2, (8,))
        model(input_ids=inputs, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        method.step(step, steps)
    return {name: mask.mask.clone() for name, mask in method.masks.items()}


def test_movement_mask_lr_cannot_change_the_masks_so_it_is_not_searched():
    from transformers import BertForSequenceClassification

    from tests.conftest import tiny_config

    torch.manual_seed(1)
    state = BertForSequenceClassification(tiny_config()).state_dict()
    masks = []
    for lr in (1e-2, 3e-2, 1e-3):
        model = BertForSequenceClassification(tiny_config())
        model.load_state_dict(state)
        masks.append(train_masks(model, lr))
    for other in masks[1:]:
        assert all(torch.equal(masks[0][name], other[name]) for name in masks[0])
    assert any(not m.all() for m in masks[0].values()), "the masks did prune"

    import optuna

    trial = optuna.trial.FixedTrial({"warmup_frac": 0.1, "cooldown_frac": 0.2})
    assert set(Movement.search_space(trial)) == {"warmup_frac", "cooldown_frac"}
