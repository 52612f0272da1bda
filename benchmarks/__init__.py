"""Benchmark and study scripts, run from the repository root as ``python -m benchmarks.NAME`` (``--help`` for each).

What each one measures and where its results go: results/README.md; the current numbers: docs/benchmarks.md.
"""

from stagediff.runtime import configure_environment

# Every script here is an entry point (``python -m benchmarks.NAME`` imports this package first): OpenMP's
# settings must be in place before torch loads (stagediff.runtime).
configure_environment()
