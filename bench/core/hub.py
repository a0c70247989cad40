"""Messages about the Hugging Face Hub and dataset splits, shared by preflight, tasks and stores: one line for an
error, the hint that names the offline cache settings, and what is wrong with a split spec."""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (Hub errors run to several)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def with_hub_hint(message: str) -> str:
    """``message``, and when ``HF_HUB_OFFLINE`` is set a sentence on where models and datasets must then be."""
    hint = hub_hint()
    return f"{message.rstrip('. ')}. {hint}" if hint else message


def hub_hint() -> str:
    """When ``HF_HUB_OFFLINE`` is set, a sentence on where models and datasets must be; else empty."""
    import os

    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    if not (flag or constants.HF_HUB_OFFLINE):
        return ""
    return (
        f"HF_HUB_OFFLINE is set, so it must already be in the Hub cache HF_HUB_CACHE={constants.HF_HUB_CACHE}: "
        "point HF_HUB_CACHE at a cache that holds it, or unset HF_HUB_OFFLINE to download it"
    )


def short_model_name(model: str) -> str:
    """``sentence-transformers/all-MiniLM-L6-v2`` → ``all-MiniLM-L6-v2``; a local folder: its name."""
    return str(model).rstrip("/").rsplit("/", 1)[-1]


def split_problem(spec: str, sizes: dict[str, int], dataset: str = "the dataset") -> str | None:
    """What is wrong with split spec ``spec`` (``datasets`` syntax, e.g. ``train[:2000]+validation[:10%]``)
    against the split sizes ``sizes``, or None: malformed, an unknown split (listing the available ones), a slice
    bound past the end of its split (naming both numbers), or a slice that selects nothing."""
    from datasets import ReadInstruction

    from bench.core.registry import did_you_mean

    try:
        instruction = ReadInstruction.from_spec(spec)
    except (ValueError, AssertionError) as err:
        return f"malformed ({err}); write e.g. 'train', 'train[:2000]' or 'validation[:10%]'"
    available = ", ".join(sizes) or "(none)"
    for part in getattr(instruction, "_relative_instructions", []):
        name = part.splitname
        if name not in sizes:
            return f"{dataset} has no split {name!r}.{did_you_mean(name, list(sizes))} Available: {available}"
        size = sizes[name]
        if part.unit == "abs":
            for bound in (part.from_, part.to):
                if bound is not None and abs(bound) > size:
                    return (
                        f"the slice bound {bound} is past the end of split {name!r} of {dataset}, which has "
                        f"{size} examples; ask for at most {size} (e.g. '{name}[:{size}]', or '{name}')"
                    )
    try:
        parts = instruction.to_absolute(sizes)
    except (ValueError, KeyError) as err:
        return f"cannot be applied ({err})"
    for part in parts:
        if part.to <= part.from_:
            return f"the slice selects no examples of split {part.splitname!r} ({sizes[part.splitname]} examples)"
    return None
