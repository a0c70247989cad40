"""A stop request (SIGTERM) that survives being swallowed.

The SIGTERM handler raises ``SystemExit`` at once and also records the request here; the Trainer callback and
the worker loop check it, so a stop whose first ``SystemExit`` was swallowed by library code (a ``__del__``, a
callback run from C) still ends the run within one optimizer step.
"""

from __future__ import annotations

import threading

EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a terminated process
requested = threading.Event()


def check() -> None:
    """Raise ``SystemExit(143)`` when a stop was requested."""
    if requested.is_set():
        raise SystemExit(EXIT_CODE)
