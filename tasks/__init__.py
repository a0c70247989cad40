"""Built-in benchmark tasks: GLUE MNLI and SST-2, SQuAD v1.1 (registered as ``bench.tasks`` entry points)."""
