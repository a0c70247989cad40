"""One conformance suite per plugin kind, run over every registered plugin (as Optuna runs one over every sampler).

The suites live in the package (:mod:`bench.testing`), so an outside author runs exactly these checks on their own
plugin; ``tests/test_testing.py`` shows that they catch broken plugins.
"""

from __future__ import annotations

import pytest

from bench.core import registry
from bench.testing import check_method, check_task


@pytest.mark.parametrize("name", registry.methods.names())
def test_method_conformance(name):
    passed = check_method(registry.methods.get(name))
    assert "sparsity hits the target" in passed and "save/load keeps the zeros" in passed


@pytest.mark.parametrize("name", registry.tasks.names())
def test_task_conformance(name):
    passed = check_task(registry.tasks.get(name))
    assert {"featurize", "evaluate", "trivial_baseline"} <= set(passed)
