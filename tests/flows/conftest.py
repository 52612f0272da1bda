"""Fixtures shared by the pipeline tests: a real Prefect API server for the tests that run flows in subprocesses.

Without PREFECT_API_URL every flow process starts its own temporary server (11-21 s each, stack.md); tests that
run several flows point them at this one instead (``environment[...]["PREFECT_API_URL"] = prefect_api``)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest

from flows.repro import free_port, stop, wait_until_healthy


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[str]:
    """The API URL of a `prefect server start` (own PREFECT_HOME, loopback, no UI) for the whole session."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="true")
    log = home / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                                   str(port), "--no-services", "--no-ui"], env=env, stdout=output,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_healthy(url, server, log)
        yield url
    finally:
        stop(server)
