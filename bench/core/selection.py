"""The k-th smallest value of each row, exactly, and warm-started from the previous step's threshold.

Every method on the cubic schedule re-selects its masks after each optimizer step (Sanh et al. 2020, eq. 2: the
top-v of the scores); one ``kthvalue`` over MiniLM's 10.6M prunable weights cost about 4% of a training step on
two CPU cores, most of issue 18's masking overhead. Between two steps the scores move little, so the new
threshold lies close to the old one: :class:`WarmKthValue` counts the entries below a narrow band around it
(two vectorized comparisons), selects the k-th value among the few entries inside the band, and falls back to a
full ``kthvalue`` for any row whose k-th value left the band. The value is the same as ``kthvalue``'s, always
(the k-th smallest value of a row is unique, whatever the ties); only the time changes. torch has no selection
that takes a starting guess, hence this code.
"""

from __future__ import annotations

from collections.abc import Hashable

import torch
from torch import Tensor

BAND = 1 / 32  # the band aims at this fraction of a row: wide enough to hold the next threshold, cheap to select in


def kth_value(values: Tensor, k: int, dim: int = -1) -> Tensor:
    """The ``k``-th smallest entry along ``dim`` (kept as a size-1 dimension when ``values`` is 2-D).

    On CUDA, torch has no deterministic ``kthvalue`` and refuses it under ``torch.use_deterministic_algorithms``
    (which the Trainer's ``full_determinism`` turns on). Only the *index* of the k-th value can vary between runs
    (among ties), never the value, and only the value is used here, so determinism is switched off for this one call.
    """
    keepdim = values.dim() > 1
    if values.device.type == "cpu" or not torch.are_deterministic_algorithms_enabled():
        return values.kthvalue(k, dim=dim, keepdim=keepdim).values
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        return values.kthvalue(k, dim=dim, keepdim=keepdim).values
    finally:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)


class WarmKthValue:
    """``kthvalue`` of each row, warm-started from the previous call with the same ``key``.

    Keeps, per key, the last thresholds and a band half-width per row. A call counts the entries below the band
    and inside it; a row whose k-th value lies inside takes it from the band's entries alone, any other row from
    a full ``kthvalue``. The half-width then follows the row: it covers twice the threshold's last move and aims
    at :data:`BAND` of the row's entries (halved or doubled at most per call; doubled after a miss).
    """

    def __init__(self) -> None:
        self._state: dict[Hashable, tuple[Tensor, Tensor]] = {}

    def __call__(self, key: Hashable, values: Tensor, k: int) -> Tensor:
        """The ``k``-th smallest value (1-based) of each row of ``values``.

        Args:
            key: names the rows (e.g. the matrices stacked in ``values``); a call with another row count restarts it.
            values: (rows, n), floating point.
            k: 1 ≤ k ≤ n, the same for every row.

        Returns:
            (rows, 1), equal to ``values.kthvalue(k, dim=1, keepdim=True).values``.
        """
        state = self._state.get(key)
        if state is None or state[0].shape[0] != values.shape[0] or state[0].dtype != values.dtype:
            threshold = kth_value(values, k, dim=1)
            self._state[key] = (threshold, self._fresh_width(values, threshold))
            return threshold
        center, width = state
        threshold, inside, hit = self._from_band(values, k, center - width, center + width)
        target = BAND * values.shape[1]
        scale = (target / inside.clamp(min=1).to(values.dtype)).clamp(0.5, 2.0).unsqueeze(1)
        new_width = torch.maximum(width * torch.where(hit.unsqueeze(1), scale, 2.0), 2 * (threshold - center).abs())
        missed = ~hit
        if bool(missed.any()):  # a row whose width collapsed (all scores equal, then moving) gets a fresh one
            new_width[missed] = torch.maximum(new_width[missed], self._fresh_width(values[missed], threshold[missed]))
        self._state[key] = (threshold, new_width)
        return threshold

    @staticmethod
    def _from_band(values: Tensor, k: int, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(thresholds (rows, 1), entries inside the band per row, whether each row's k-th value was inside)."""
        count = torch.int32 if values.shape[1] < 2**31 else torch.int64  # int32 sums of bools are ~20x faster
        below = (values < low).sum(1, dtype=count)
        in_band = (values >= low) & (values <= high)
        inside = in_band.sum(1, dtype=count)
        rank = k - below  # 1-based rank of the k-th value among the band's entries
        hit = (rank >= 1) & (rank <= inside)
        threshold = torch.empty(values.shape[0], 1, dtype=values.dtype, device=values.device)
        band = values[in_band].split(inside.tolist())  # row-major: row r's band entries are the r-th piece
        for row, (ok, r) in enumerate(zip(hit.tolist(), rank.tolist(), strict=True)):
            if ok:
                threshold[row, 0] = kth_value(band[row], r)
        missed = ~hit
        if bool(missed.any()):
            threshold[missed] = kth_value(values[missed], k, dim=1)
        return threshold, inside, hit

    @staticmethod
    def _fresh_width(values: Tensor, threshold: Tensor) -> Tensor:
        """A first half-width: 5% of the row's standard deviation (a band of about 4% of a normal row)."""
        spread = values.std(dim=1, keepdim=True).nan_to_num(0.0)
        return torch.maximum(0.05 * spread, threshold.abs() * 1e-6)
