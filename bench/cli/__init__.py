"""The ``bench`` command line, one module per command group (:mod:`bench.cli.app` builds the parser)."""

from bench.cli.app import main

__all__ = ["main"]
