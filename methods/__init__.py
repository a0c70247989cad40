"""Built-in pruning methods, one per file. Each registers through the ``bench.methods`` entry-point group."""
