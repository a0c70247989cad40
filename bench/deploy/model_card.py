"""The model card of an export: ``README.md`` with the Hub's ``model-index`` metadata, so that an export folder can be
pushed to the Hub as it is (``huggingface-cli upload USER/NAME EXPORT_DIR .``).

Built with ``huggingface_hub``'s :class:`~huggingface_hub.ModelCardData` and :class:`~huggingface_hub.EvalResult`
(the Hub's own schema, validated by the library) rather than hand-written YAML. The metadata carries the task,
dataset, split and metrics of the cell's record; the pruning method, target and measured sparsity, parameters
remaining, the cell id and the parity check go under ``prune_bench``.
"""

from __future__ import annotations

from typing import Any

from bench.core.hub import short_model_name

# The Hub's task types for our heads.
TASK_TYPES = {"sequence-classification": "text-classification", "question-answering": "question-answering"}


def card_data(record: Any, task: Any, info: dict[str, Any]):
    """:class:`huggingface_hub.ModelCardData` of an export of ``record`` (a finished CellRecord) of ``task``;
    ``info`` is what ``export.json`` holds (sizes, compaction, ``parity``)."""
    from huggingface_hub import EvalResult, ModelCardData

    cell = record.cell
    split = cell["task"].get("eval_split", task.eval_split)
    results = [
        EvalResult(
            task_type=TASK_TYPES.get(task.head, task.head), task_name=task.name, dataset_type=task.dataset_id,
            dataset_name=f"{task.dataset_id} {task.dataset_config or ''}".strip(), dataset_config=task.dataset_config,
            dataset_split=split, metric_type=metric, metric_name=metric, metric_value=round(float(value), 4),
        )
        for metric, value in record.metrics.items()
    ]  # fmt: skip
    parity = info.get("parity") or {}
    return ModelCardData(
        base_model=cell["model"], datasets=[task.dataset_id], library_name="transformers",
        tags=["pruning", "sparse", "prune-bench", cell["method"]], metrics=list(record.metrics),
        model_name=f"{short_model_name(cell['model'])}-{cell['method']}-{task.name}-sparsity{cell['sparsity'] * 100:g}",
        eval_results=results,
        prune_bench={
            "cell_id": record.id, "method": cell["method"], "target_sparsity": cell["sparsity"],
            "encoder_sparsity": record.sparsity["encoder_sparsity"],
            "remaining_params": record.sparsity["remaining_params"], "seed": cell["seed"],
            "parity_passed": parity.get("passed"), "sparse_bytes": info.get("sparse_bytes"),
        },
    )  # fmt: skip


def model_card(record: Any, task: Any, info: dict[str, Any]) -> str:
    """The text of ``README.md``: the metadata of :func:`card_data` and a short body (what the model is, its
    numbers, how to load it, how it was measured)."""
    data = card_data(record, task, info)
    cell, sparsity = record.cell, record.sparsity
    parity = info.get("parity") or {}
    checked = {True: "passed", False: "FAILED"}.get(parity.get("passed"), "not run")
    metrics = ", ".join(f"{m} {v:.2f}" for m, v in record.metrics.items())
    body = f"""
# {data.model_name}

`{cell['model']}` fine-tuned on {task.name} ({task.dataset_id}) and pruned with **{cell['method']}** by
prune-bench to a target sparsity of {cell['sparsity']:.0%}: {sparsity['encoder_sparsity']:.2%} of the encoder's
prunable weights (Q, K, V, attention output, FFN in and out) are exact zeros; {sparsity['remaining_params']:,}
parameters remain. Eval split `{cell['task'].get('eval_split', task.eval_split)}`: {metrics} (seed {cell['seed']}).

Cell `{record.id}`; its record holds the budget, hyperparameters, package versions, verdicts and 95% intervals.
Parity of this export with the record: {checked} (tolerance {parity.get('tolerance', '—')}).

## Loading

The attention heads and FFN units the pruning emptied are removed, so layers have their own shapes
(`config.compact_shapes`), which no stock transformers class sizes. Load it with prune-bench installed:

```python
from bench.deploy.export import load_export
model = load_export("PATH")  # model.sparse.safetensors; load_export("PATH", sparse=False) reads model.safetensors
```
"""
    from huggingface_hub import ModelCard

    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))
