"""``python -m flows.repro [dvc arguments]``: run ``dvc repro`` (or ``dvc exp run ...`` with ``exp run ...``) with
one temporary local Prefect server for all stages, and stop it afterwards.

Without a server each stage's flow would start its own temporary one (11-21 s each, stack.md). With
PREFECT_API_URL already set (a server you run), that server is used and nothing is started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows import PROJECT, configure_environment

STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def prefect_server() -> Iterator[str]:
    """The server of PREFECT_API_URL when it is set, else a temporary local one (:func:`local_prefect_server`
    under PREFECT_HOME) for the duration of the block; yields its API URL."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    with local_prefect_server(Path(os.environ["PREFECT_HOME"])) as url:
        yield url


@contextmanager
def local_prefect_server(home: Path) -> Iterator[str]:
    """A new Prefect API server (SQLite under ``home``, loopback, free port, no UI) for the duration of the
    block; yields its API URL and stops its whole process group afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    environment = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    environment["PREFECT_HOME"] = str(home)
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-services",
                "--no-ui",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    try:
        wait_until_healthy(url, server, log)
        yield url
    finally:
        stop(server)


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with status {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Prefect server was not ready within {STARTUP_SECONDS} s; see {log}")


def stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop a process started with start_new_session=True and everything it started."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    configure_environment()  # first: the Prefect server and dvc's stages inherit it
    arguments = list(sys.argv[1:] if argv is None else argv) or ["repro"]
    dvc = Path(sys.executable).with_name("dvc")
    environment_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with prefect_server() as url:
        print(f"Prefect server ready at {url}", flush=True)
        environment = {**os.environ, "PREFECT_API_URL": url, "PATH": environment_path}
        return subprocess.call([str(dvc), *arguments], cwd=PROJECT, env=environment)


if __name__ == "__main__":
    sys.exit(main())
