"""Benchmark and study scripts, run from the repository root as ``python -m benchmarks.NAME`` (``--help`` for each).

What each one measures and where its results go: results/README.md; the current numbers: docs/benchmarks.md.
"""
