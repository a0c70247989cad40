"""The plugin core: the method and task interfaces, masks as parametrizations, the prunable-weight tables, the cubic
schedule, the plugin registries, metrics, sparsity accounting and the errors the CLI turns into exit code 2.

Depends on nothing else in ``bench``; every other wing builds on it.
"""
