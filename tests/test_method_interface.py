"""The method interface (issue 15): one abstract ``scores()``, typed ``Hparams``, the cubic schedule by inheritance,
the cell's seed explicit, and plugins written against the older ``defaults`` dict still load."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from bench.methods.abp import AdaptingByPruning
from bench.methods.l0 import L0
from bench.methods.movement import Movement

from bench.core.errors import BenchError
from bench.core.method import PruningMethod
from bench.core.schedule import CubicScheduleHparams


def _kept(method: PruningMethod) -> float:
    masks = [m.mask for m in method.masks.values()]
    return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


class RowIndex(PruningMethod):
    """Scores = the row index: the top rows are kept. Nothing but ``scores()`` and the schedule."""

    name = "row_index"
    description = "test"
    Hparams = CubicScheduleHparams

    def scores(self):
        return {n: torch.arange(w.shape[0]).float()[:, None].expand_as(w) for n, w in self._weights().items()}

    def _weights(self):
        return {name: self.weight(name) for name in self.masks}


def test_scores_alone_prune_on_the_cubic_schedule_and_finalize_at_the_target(tiny_bert):
    method = RowIndex(0.5, warmup_frac=0.0, cooldown_frac=0.0)
    method.prepare(tiny_bert)
    method.step(5, 10)
    expected = method.scheduled_sparsity(5, 10)
    assert 0 < expected < 0.5
    assert _kept(method) == pytest.approx(1 - expected, abs=0.01)
    name, mask = next(iter(method.masks.items()))
    assert bool(mask.mask[-1].all()) and not bool(mask.mask[0].any())  # the highest scores are kept
    method.set_final_masks()
    assert _kept(method) == pytest.approx(0.5, abs=0.01)


def test_a_method_off_the_cubic_schedule_is_not_projected_by_the_default_step(tiny_bert):
    method = L0(0.5)
    method.prepare(tiny_bert)
    before = {n: m.scores.detach().clone() for n, m in method.masks.items()}
    method.step(5, 10)
    assert all(torch.equal(before[n], m.scores) for n, m in method.masks.items())


def test_hparams_are_a_typed_frozen_dataclass_and_defaults_derive_from_it():
    method = Movement(0.9, mask_lr=0.05, warmup_steps=100)
    assert method.h.mask_lr == 0.05 and method.h.warmup_steps == 100 and method.h.cooldown_frac == 0.2
    unchanged = {k: v for k, v in dataclasses.asdict(method.h).items() if k not in ("granularity", "block_size")}
    assert method.hparams == unchanged, "granularity enters records and ids only where it changes the run"
    assert Movement(0.9, granularity="block").hparams == {**unchanged, "mask_lr": 0.01, "warmup_steps": None,
                                                          "granularity": "block", "block_size": 32}  # fmt: skip
    assert dict(Movement.defaults) == dataclasses.asdict(Movement.Hparams())
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.h.mask_lr = 1.0
    with pytest.raises(TypeError):
        Movement.defaults["mask_lr"] = 1.0  # read-only
    with pytest.raises(BenchError, match="must be a finite number"):
        Movement(0.9, mask_lr="x")
    with pytest.raises(BenchError, match="unknown hyperparameter"):
        Movement(0.9, mask_rate=0.1)


def test_a_plugin_with_an_older_defaults_dict_still_loads(tiny_bert):
    class Legacy(PruningMethod):
        name = "legacy"
        description = "test"
        defaults = {"strength": 2.0}

        def scores(self):
            return {name: self.weight(name).detach().abs() * self.h.strength for name in self.masks}

    assert Legacy(0.5, strength=3).h.strength == 3
    assert dict(Legacy.defaults) == {"strength": 2.0}
    with pytest.raises(BenchError, match="strength"):
        Legacy(0.5, strength="strong")
    method = Legacy(0.5)
    method.prepare(tiny_bert)
    method.finalize(tiny_bert)


def test_the_cells_seed_reaches_the_method(tiny_bert):
    def initial_logits(seed: int) -> torch.Tensor:
        torch.manual_seed(123)  # the global generator is the same every time: only the cell's seed differs
        method = AdaptingByPruning(0.5, seed=seed)
        method.prepare(tiny_bert)
        return torch.cat([s.detach().flatten() for s in method.scores().values()])

    assert torch.equal(initial_logits(0), initial_logits(0))
    assert not torch.equal(initial_logits(0), initial_logits(1))


def test_the_reference_row_is_decided_by_prunes_not_by_name(monkeypatch):
    from bench.methods.dense import Dense

    from bench.core import registry

    assert registry.is_reference("dense") and not registry.is_reference("magnitude")
    assert not registry.is_reference("a-method-from-an-old-record")
    entries = dict(registry.methods.entries)
    entries["plain_finetune"] = entries["dense"]  # another name for a method that prunes nothing
    monkeypatch.setattr(registry.methods, "entries", entries)
    monkeypatch.setitem(registry.methods._loaded, "plain_finetune", Dense)
    assert registry.is_reference("plain_finetune")
