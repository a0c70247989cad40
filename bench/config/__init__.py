"""What a matrix asks for: the validated configuration (flags and YAML), presets, cells and their ids, and the
resolution of a cell to its task object and tokenizer. Builds on :mod:`bench.core`.
"""
