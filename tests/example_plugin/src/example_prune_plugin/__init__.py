"""Example prune-bench plugins (see the README's "Adding a method", "Adding a task", "Adding an architecture")."""
