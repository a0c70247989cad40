"""Errors that the CLI turns into a clear message and exit code 2."""


class BenchError(Exception):
    """Bad input or an unsupported setting. The message names the bad value and the valid choices."""
