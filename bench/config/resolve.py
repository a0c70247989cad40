"""A cell's task object and a model's tokenizer, built once per process.

Shared by the training run (:mod:`bench.run.execute`) and the export check (:mod:`bench.deploy.export`), so that neither
imports the other for them.
"""

from __future__ import annotations

import json
from functools import lru_cache

from bench.config.cell import Cell
from bench.core import registry
from bench.core.task import Task


@lru_cache(maxsize=4)
def load_tokenizer(model_id: str):
    """The tokenizer of ``model_id`` (a Hub id or a local folder), cached per process.

    Raises:
        whatever ``AutoTokenizer.from_pretrained`` raises (OSError for a missing model).
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_id)


def task_of(cell: Cell) -> Task:
    """The task object of ``cell`` (its name, splits and dev fraction), cached per process.

    Raises:
        BenchError: the task name is not registered.
    """
    return task_by_key(json.dumps(cell.task, sort_keys=True))


@lru_cache(maxsize=16)
def task_by_key(task_key: str) -> Task:
    """The task object of a cell's task spec given as sorted JSON (hashable, so it can be cached)."""
    spec = json.loads(task_key)
    if "definition" in spec:  # a YAML task (--include-tasks): rebuilt from the cell itself, folder or not
        from bench.tasks.yaml_tasks import parse_config, task_class

        cls = task_class(parse_config(spec["definition"], f"of the cell's task {spec['name']!r}"))
    else:
        cls = registry.tasks.get(spec["name"])
    return cls(spec["train_split"], spec["eval_split"], spec["dev_fraction"])
