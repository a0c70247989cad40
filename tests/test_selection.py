"""WarmKthValue (issue 18, a cheaper step): the k-th value warm-started from the last threshold is always
``kthvalue``'s, whatever the drift, ties or k; and on a slow drift it really avoids the full selection."""

from __future__ import annotations

import pytest
import torch

from bench.core import selection
from bench.core.masking import topk_mask, topk_masks
from bench.core.selection import WarmKthValue


def expected(values: torch.Tensor, k: int) -> torch.Tensor:
    return values.kthvalue(k, dim=1, keepdim=True).values


def full_calls(monkeypatch) -> list[int]:
    """The row lengths of every call to the full selection, recorded."""
    calls: list[int] = []
    real = selection.kth_value

    def spy(values, k, dim=-1):
        calls.append(values.shape[-1])
        return real(values, k, dim)

    monkeypatch.setattr(selection, "kth_value", spy)
    return calls


def test_a_slow_drift_gives_kthvalue_s_thresholds_from_the_band_alone(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(5, 20_000, generator=gen).abs()
    warm, calls = WarmKthValue(), full_calls(monkeypatch)
    for step in range(30):
        k = 10_000 + 150 * step  # the cubic schedule raising the sparsity
        values = values + 1e-3 * torch.randn(values.shape, generator=gen)
        assert torch.equal(warm("layers", values, k), expected(values, k)), step
    full_rows = [n for n in calls if n == values.shape[1]]
    assert len(full_rows) == 1, "only the first call selects over whole rows"
    assert max(n for n in calls if n != values.shape[1]) < 0.2 * values.shape[1], "the bands stay small"


@pytest.mark.parametrize("jump", [0.0, 0.5, 50.0])
def test_jumps_ties_and_k_changes_never_change_the_value(jump):
    gen = torch.Generator().manual_seed(1)
    warm = WarmKthValue()
    values = torch.zeros(3, 4000)  # movement's scores at init: all equal
    for step in range(25):
        k = int(torch.randint(1, 4001, (1,), generator=gen))
        if step % 5 == 4:  # a row leaves its band entirely
            values[step % 3] += jump
        values = values + 0.01 * torch.randn(values.shape, generator=gen)
        if step % 7 == 3:
            values = values.round(decimals=1)  # many ties at the threshold
        assert torch.equal(warm("m", values, k), expected(values, k)), (step, k)


def test_another_row_count_or_key_restarts_the_selection():
    warm = WarmKthValue()
    a, b = torch.randn(4, 1000), torch.randn(2, 1000)
    assert torch.equal(warm("x", a, 10), expected(a, 10))
    assert torch.equal(warm("x", b, 500), expected(b, 500))  # fewer rows under the same key
    assert torch.equal(warm("y", a * 100, 999), expected(a * 100, 999))
    assert torch.equal(warm("x", b + 1e-4, 1), expected(b + 1e-4, 1))


def test_warm_top_k_masks_equal_the_cold_ones_through_a_pruning_ramp():
    """What a method sees: the same masks with and without the warm start, every step of a ramp."""
    gen = torch.Generator().manual_seed(2)
    scores = {f"l{i}.{m}": torch.randn(64, 32, generator=gen) for i in range(3) for m in ("q", "k")}
    scores["ffn"] = torch.randn(128, 32, generator=gen).round(decimals=1)  # ties: exercises topk_mask's fallback
    warm, single = WarmKthValue(), WarmKthValue()
    for step in range(20):
        sparsity = 0.9 * (1 - (1 - step / 19) ** 3)
        scores = {n: s + 0.02 * torch.randn(s.shape, generator=gen) for n, s in scores.items()}
        cold = topk_masks(scores, sparsity)
        assert all(torch.equal(cold[n], m) for n, m in topk_masks(scores, sparsity, warm).items()), step
        for name, s in scores.items():
            assert torch.equal(topk_mask(s, sparsity, (single, name)), topk_mask(s, sparsity)), (step, name)
