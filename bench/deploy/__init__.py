"""Deploying a finalized model: structured compaction, sparse storage, exports and measured inference latency.
Does not import :mod:`bench.run`.
"""
