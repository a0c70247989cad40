"""Which weights may be pruned: the per-architecture table.

Sparsity accounting follows Sanh, Wolf & Rush (2020), "Movement Pruning", section 5: the prunable set is the
encoder's linear weight matrices (attention Q, K, V and output, FFN in and FFN out). Embeddings, the pooler,
task heads, every bias and every LayerNorm stay dense and out of the count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

from torch import nn

from bench.core.errors import BenchError


@dataclass(frozen=True)
class Architecture:
    """Name patterns of one architecture's prunable linear layers.

    Attributes:
        model_type: ``config.model_type`` as transformers spells it.
        layer_pattern: regex capturing the encoder layer index from a module name.
        roles: ``{role: module-name suffix}`` for the six matrix roles q, k, v, o, ffn_in, ffn_out.
        removable_heads: the attention code reshapes by ``(-1, head_size)``, so a layer may have fewer heads
            than the config says (:mod:`bench.deploy.compaction` removes dead heads only then).
    """

    model_type: str
    layer_pattern: str
    roles: dict[str, str]
    removable_heads: bool = True


ROLES = ("q", "k", "v", "o", "ffn_in", "ffn_out")

BERT_ROLES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}

# The built-in tables. They register through prune-bench's own pyproject (entry-point group
# ``bench.architectures``, name = ``model_type``), exactly as an outside package adds one.
BERT = Architecture("bert", r"encoder\.layer\.(\d+)\.", BERT_ROLES)
ROBERTA = Architecture("roberta", r"encoder\.layer\.(\d+)\.", BERT_ROLES)
DISTILBERT = Architecture(
    "distilbert",
    r"transformer\.layer\.(\d+)\.",
    {
        "q": "attention.q_lin",
        "k": "attention.k_lin",
        "v": "attention.v_lin",
        "o": "attention.out_lin",
        "ffn_in": "ffn.lin1",
        "ffn_out": "ffn.lin2",
    },
)
MPNET = Architecture(
    "mpnet",
    r"encoder\.layer\.(\d+)\.",
    {
        "q": "attention.attn.q",
        "k": "attention.attn.k",
        "v": "attention.attn.v",
        "o": "attention.attn.o",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
    },
    removable_heads=False,  # its relative-position bias has one row per head
)


class ArchitectureTable(MutableMapping):
    """``{model_type: Architecture}`` over the ``bench.architectures`` entry points, each loaded when first looked up.

    Items set in-process (``ARCHITECTURES["x"] = ...``, e.g. by a test or a notebook) win over registered ones.

    Raises:
        BenchError: a registered entry that is not an :class:`Architecture` for its own name, or a name registered by
            two distributions (:mod:`bench.core.registry`).
    """

    def __init__(self) -> None:
        self._local: dict[str, Architecture] = {}

    def _names(self) -> set[str]:
        import bench.core.registry as registry

        return set(registry.architectures.entries) | set(self._local)

    def __getitem__(self, model_type: str) -> Architecture:
        import bench.core.registry as registry

        if model_type in self._local:
            return self._local[model_type]
        if not isinstance(model_type, str) or model_type not in registry.architectures.entries:
            raise KeyError(model_type)
        arch = registry.architectures.get(model_type)
        if not isinstance(arch, Architecture) or arch.model_type != model_type:
            where = registry.architectures.entry(model_type).where()
            raise BenchError(
                f"architecture entry point {model_type!r} of {where} must be a bench.core.prunable.Architecture with "
                f"model_type {model_type!r}, got {arch!r}"
            )
        return arch

    def __contains__(self, model_type: object) -> bool:
        return model_type in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names()))

    def __len__(self) -> int:
        return len(self._names())

    def __setitem__(self, model_type: str, arch: Architecture) -> None:
        self._local[model_type] = arch

    def __delitem__(self, model_type: str) -> None:
        del self._local[model_type]


ARCHITECTURES = ArchitectureTable()


@dataclass(frozen=True)
class PrunableWeight:
    """One prunable matrix: ``module.weight`` of shape (out_features, in_features)."""

    name: str  # module name in the model, e.g. "bert.encoder.layer.0.attention.self.query"
    module: nn.Linear
    layer: int
    role: str  # one of ROLES


def architecture_of(model: nn.Module) -> Architecture:
    """The table entry for ``model.config.model_type``.

    Raises:
        BenchError: the architecture is not in the table; the message lists the supported ones.
    """
    return architecture_for(getattr(getattr(model, "config", None), "model_type", None))


def architecture_for(model_type: str | None) -> Architecture:
    """The table entry for ``model_type`` (a transformers ``config.model_type``).

    Raises:
        BenchError: the architecture is not in the table; the message lists the supported ones.
    """
    if model_type not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES) or "none (no bench.architectures entry point: reinstall prune-bench)"
        raise BenchError(
            f"unsupported architecture {model_type!r}: prunable weights are known for {known}. A package adds one "
            "with an Architecture under the entry-point group bench.architectures (README: Adding an architecture)."
        )
    return ARCHITECTURES[model_type]


def prunable_weights(model: nn.Module) -> list[PrunableWeight]:
    """Every prunable linear layer of ``model``, in module order.

    Matching is by name suffix inside an encoder layer, so task heads (``classifier``, ``qa_outputs``) and
    the pooler never match.

    Raises:
        BenchError: unknown architecture, or a known one in which no prunable layer was found.
    """
    arch = architecture_of(model)
    layer_re = re.compile(arch.layer_pattern)
    found = []
    for name, module in model.named_modules():
        match = layer_re.search(name)
        if match is None or not isinstance(module, nn.Linear):
            continue
        rest = name[match.end() :]
        for role, suffix in arch.roles.items():
            if rest == suffix:
                found.append(PrunableWeight(name, module, int(match.group(1)), role))
    if not found:
        raise BenchError(f"no prunable linear layers found in this {arch.model_type!r} model")
    return found
