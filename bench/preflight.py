"""Checks that run before a matrix writes anything: bad input fails fast, with exit code 2 and nothing written."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.cell import Cell
    from bench.matrix import Matrix


def check(matrix: Matrix, cells: list[Cell]) -> None:
    """Raise :class:`bench.errors.BenchError` for anything that would make the matrix fail; write nothing."""
