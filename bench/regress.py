"""``bench regress``: the regression gate on a tiny model (to be written)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``regress`` subcommand to the ``bench`` parser."""
