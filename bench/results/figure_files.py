"""Writing a reading command's files without damaging committed ones: a file whose inputs did not change is left
as it is (same bytes, same modification time), so that ``bench plot`` and ``bench report`` on a committed results
folder leave ``git status`` clean, and a newer drawing replaces a file only when its data changed.

A PNG carries the digest of what it was drawn from in a text chunk (:data:`DIGEST_KEY`); the digest covers the
data (floats rounded to 6 significant digits, so a library's last-bit noise does not count) and
:data:`DRAWING_VERSION`, which is bumped when the drawing code changes on purpose. An HTML page is compared byte for
byte.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIGEST_KEY = "bench-inputs"
DRAWING_VERSION = "2"  # 2: Pareto titles name model, preset and seeds; legend outside the axes


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def inputs_digest(*parts: Any) -> str:
    """sha256 (hex) of ``parts`` as canonical JSON (floats rounded, anything else by ``str``) and the version."""
    text = json.dumps([DRAWING_VERSION, *_rounded(list(parts))], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def png_digest(path: Path) -> str | None:
    """The :data:`DIGEST_KEY` of an existing PNG, or None (no file, no chunk, not a PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.text.get(DIGEST_KEY) if hasattr(image, "text") else None
    except (OSError, UnidentifiedImageError):
        return None


def save_figure(plt: Any, draw: Callable[[], Any], path: Path, digest: str) -> Path:
    """Draw (``draw()`` returns a figure) and save the PNG ``path`` unless the file there was drawn from the same
    inputs (``digest``, :func:`inputs_digest`), which then stays untouched and is not redrawn. Returns ``path``."""
    if png_digest(path) != digest:
        fig = draw()
        try:
            fig.savefig(path, metadata={DIGEST_KEY: digest})
        finally:
            plt.close(fig)
    return path


def write_text_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` (UTF-8) to ``path`` unless the file already holds exactly it. Returns whether it wrote."""
    path = Path(path)
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True
