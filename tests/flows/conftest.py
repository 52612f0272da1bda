"""Fixtures shared by the pipeline tests: a real Prefect API server for the tests that run flows in subprocesses.

Without PREFECT_API_URL every flow process starts its own temporary server (11-21 s each, stack.md); tests that
run several flows point them at this one instead (``environment[...]["PREFECT_API_URL"] = prefect_api``)."""

from __future__ import annotations

from collections.abc import Iterator

import flows

flows.configure_environment()  # this process's, as a stage's: before prefect and mlflow are imported

import pytest  # noqa: E402

from flows.repro import local_prefect_server  # noqa: E402


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[str]:
    """The API URL of a `prefect server start` (own PREFECT_HOME, loopback, no UI) for the whole session."""
    with local_prefect_server(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url
