"""What the conformance suites (:mod:`bench.testing`, :mod:`bench.testing.tasks`) share: the error they raise, the
tiny random BERT they build, and a context that quiets library logging."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class ConformanceError(AssertionError):
    """A plugin broke a property of its interface; the message names the plugin and the property."""


def tiny_bert_config(**overrides: Any):
    """A 2-layer BERT config, hidden 32, 2 heads, FFN 64, 3 labels (``overrides`` win)."""
    from transformers import BertConfig

    settings = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=512, num_labels=3)  # fmt: skip
    return BertConfig(**{**settings, **overrides})


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """transformers' and datasets' progress bars and load reports off, as they were afterwards."""
    import datasets
    from transformers.utils import logging

    verbosity, bars, data_bars = (
        logging.get_verbosity(),
        logging.is_progress_bar_enabled(),
        datasets.is_progress_bar_enabled(),
    )
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
        if data_bars:
            datasets.enable_progress_bars()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def require_plugin_metadata(cls: Any, base: type, base_name: str) -> None:
    """What every plugin class needs: to subclass ``base``, a name, and a one-line description (bench ls shows it)."""
    _require(isinstance(cls, type) and issubclass(cls, base), f"must subclass {base_name}")
    _require(isinstance(getattr(cls, "name", None), str) and cls.name.strip() != "", "needs a name")
    description = getattr(cls, "description", None)
    _require(isinstance(description, str) and description.strip() and "\n" not in description,
             "needs a one-line description (bench ls shows it)")  # fmt: skip
