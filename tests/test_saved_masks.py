"""Saved masks: one bit per prunable weight, exact round trip, per-layer × role sparsity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.prunable import prunable_weights
from bench.results.saved_masks import layer_sparsity, load_masks, save_masks


def test_masks_round_trip_bit_exactly_and_give_layer_by_role_sparsity(tiny_bert, tmp_path):
    torch.manual_seed(1)
    weights = prunable_weights(tiny_bert)
    with torch.no_grad():
        for i, pw in enumerate(weights):
            w = pw.module.weight
            w[torch.rand_like(w) < 0.1 * (i % 6)] = 0.0  # role j of each layer loses about j × 10%
        weights[0].module.weight[:] = 0.0  # layer 0 Q: everything
    path = save_masks(tiny_bert, tmp_path / "masks" / "cell.safetensors")
    loaded = load_masks(path)

    assert set(loaded) == {pw.name for pw in weights}
    for pw in weights:
        mask, layer, role = loaded[pw.name]
        assert (layer, role) == (pw.layer, pw.role)
        assert np.array_equal(mask, (pw.module.weight != 0).numpy())
    frame = layer_sparsity(loaded)
    assert list(frame.columns) == ["q", "k", "v", "o", "ffn_in", "ffn_out"] and list(frame.index) == [0, 1]
    assert frame.loc[0, "q"] == 1.0
    expected = 1.0 - (weights[8].module.weight != 0).float().mean().item()  # layer 1, v
    assert frame.loc[1, "v"] == pytest.approx(expected) and 0.1 < expected < 0.3
    size = path.stat().st_size
    prunable = sum(pw.module.weight.numel() for pw in weights)
    assert size < prunable / 8 + 20_000, "about one bit per weight"
