"""Latency, throughput and stability of the BentoML service against a real `bentoml serve`.

    .venv/bin/python -m benchmarks.serving --out results/benchmarks/serving-benchmark.json

A window-256 model (default StageDiffConfig, 5 synthetic channels, trained for 50 steps: speed does not depend on
quality; trained once into runs/serving-benchmark/model) is stored in a temporary BentoML home and served twice on
free loopback ports, with and without cross-request batching. /generate is measured for one 256-step sample at the
model's default sampling (ancestral DDIM, 20 evaluations) with 1, 8 and 32 concurrent clients (each client sends
its next request when the previous one is answered) and for one 10,016-step sample (10,000 rounded up to a multiple
of the stage length). The two servers take turns, round by round, so that the shared machine's changing load falls
on both alike. Then the batching server runs a 32-client soak (errors, its memory every 10 s) and a 100,000-step
stream (time to the first record; the client then leaves and the service must stop sampling), and takes turns with
a server on 2 torch threads for the 1-client latency.

Fairness: while one request of the largest size the budget allows (16 x 2,496 steps at 50 DDIM steps) runs, one
client sends 1 x 256-step requests back to back; their latencies show whether small requests wait for the large
one. Clients that leave: a /generate of that size, a stream of it left before its first record, and a long stream
left after its first records; the server's CPU time (psutil, whole process tree) is sampled every 0.1 s after the
client left, to show when it stops computing. The soak mixes 4 clients of that large request into the 32.
``--sections`` runs a subset (e.g. ``--sections fairness leaving soak``). ``--sections compare --baseline DIR``
serves another checkout of the project (e.g. the commit before a change) beside this one and takes turns between
the two for 1, 8 and 32 clients and the fairness check.

Prints a markdown table (the one in docs/serving.md) and writes the raw numbers as JSON. Not a test:
timings on a shared machine are noisy; compare numbers measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmarks.machine import describe_machine
from serving.requests import RequestLimits

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "runs" / "serving-benchmark" / "model"
ONE_SAMPLE = {"n_samples": 1, "length": 256}
"""At the model's own sampling (no ``steps``, no ``sampler``): ancestral DDIM, 20 evaluations, as a user gets it."""
LONG_SAMPLE = {"n_samples": 1, "length": 10_016}
"""10,000 steps rounded up to a multiple of the stage length (32), at the model's own sampling."""
CHANNELS, STAGE = 5, 32
LARGEST = {
    "n_samples": RequestLimits().max_samples,
    "steps": 50,
    "length": RequestLimits().longest(RequestLimits().max_samples, CHANNELS, 50, STAGE),
}
"""The largest request of the default limits at 50 steps: 16 x 2,496 steps, n * length * channels * steps just under
the budget max_cost."""
SOAK_LARGE_CLIENTS = 4
SECTIONS = ("table", "long", "soak", "stream", "threads", "fairness", "leaving", "compare")
TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "true"}


def train_model(path: Path) -> None:
    import torch

    from stagediff import StageDiff, StageDiffConfig

    torch.set_num_threads(1)
    StageDiff(StageDiffConfig(max_steps=50)).fit("synthetic", progress=False, device="cpu").save(path)


def relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`bentoml serve serving.service:StageDiffService` of the project at ``root`` in its own process group."""

    def __init__(self, home: Path, tag: str, log: Path, root: Path = ROOT, **settings: str):
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            **TELEMETRY_OFF,
            "BENTOML_HOME": str(home),
            "STAGEDIFF_MODEL_TAG": tag,
            "OMP_WAIT_POLICY": "PASSIVE",
            "PYTHONPATH": str(root),
            **settings,
        }
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bentoml",
                    "serve",
                    "serving.service:StageDiffService",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    self.url.rsplit(":", 1)[1],
                ],
                cwd=root,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = time.monotonic()
        while time.monotonic() - started < 120:
            if self.process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {self.process.returncode}; see {log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    self.ready_seconds = time.monotonic() - started
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"bentoml serve not ready after 120 s; see {log}")

    def rss_mb(self) -> float:
        """Resident memory of the server's whole process tree."""
        root = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20

    def info(self) -> dict:
        return httpx.get(f"{self.url}/info", timeout=30).json()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)


async def closed_loop(
    url: str,
    body: dict | list[dict],
    clients: int,
    requests_per_client: int | None = None,
    seconds: float | None = None,
    first_seed: int = 0,
    on_tick: Callable[[], None] | None = None,
) -> dict:
    """``clients`` concurrent clients, each sending ``body`` (client i: ``body[i % len(body)]`` for a list) again
    as soon as its previous answer arrived, for a number of requests each or for ``seconds``. Latencies of the
    successful requests (by request size for a list); errors counted. ``on_tick`` is called every 10 s while it
    runs (the soak samples the server's memory with it)."""
    latencies: list[float] = []
    by_size: dict[str, list[float]] = {}
    steps = 0
    errors: dict[str, int] = {}
    deadline = None if seconds is None else time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one_client(index: int) -> None:
            nonlocal steps
            mine = body[index % len(body)] if isinstance(body, list) else body
            sent = 0
            while (requests_per_client is None or sent < requests_per_client) and (
                deadline is None or time.monotonic() < deadline
            ):
                started = time.monotonic()
                try:
                    response = await client.post(
                        "/generate", json={**mine, "seed": first_seed + index * 1_000_003 + sent}
                    )
                    if response.status_code == 200:
                        latencies.append(time.monotonic() - started)
                        by_size.setdefault(f"{mine['n_samples']} x {mine['length']}", []).append(latencies[-1])
                        steps += mine["n_samples"] * mine["length"]
                    else:
                        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                except httpx.HTTPError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                sent += 1

        async def ticks() -> None:
            while True:
                await asyncio.sleep(10)
                on_tick()

        ticker = asyncio.ensure_future(ticks()) if on_tick else None
        started = time.monotonic()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        wall = time.monotonic() - started
        if ticker:
            ticker.cancel()
    return {
        "clients": clients,
        "latencies": latencies,
        "errors": errors,
        "seconds": wall,
        "steps": steps,
        "by_size": {size: percentiles(values) | {"requests": len(values)} for size, values in by_size.items()},
    }


def merge(rounds: list[dict]) -> dict:
    """Rounds of one measurement as one: all latencies, all errors, steps per second over their time."""
    latencies = [latency for measured in rounds for latency in measured["latencies"]]
    errors: dict[str, int] = {}
    for measured in rounds:
        for kind, count in measured["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    seconds = sum(measured["seconds"] for measured in rounds)
    return {
        "clients": rounds[0]["clients"],
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 2),
        **percentiles(latencies),
        "steps_per_second": round(sum(measured["steps"] for measured in rounds) / seconds, 1),
    }


def percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(np.mean(latencies)), 3),
    }


def interleaved(servers: dict[str, Server], body: dict, clients: int, requests: int, rounds: int) -> dict[str, dict]:
    """The same closed-loop load on each server in turn, ``rounds`` times, so that the shared machine's
    changing load falls on all of them alike; about ``requests`` in all per server."""
    per_round = max(1, requests // (clients * rounds))
    measured: dict[str, list[dict]] = {label: [] for label in servers}
    for round_ in range(rounds):
        for label, server in servers.items():
            measured[label].append(
                asyncio.run(
                    closed_loop(
                        server.url, body, clients, requests_per_client=per_round, first_seed=round_ * 10_000_019
                    )
                )
            )
    merged = {label: merge(rounds_) for label, rounds_ in measured.items()}
    for label, result in merged.items():
        print(f"{label}, {clients} client(s), length {body['length']}:", result, flush=True)
    return merged


def soak(server: Server, seconds: float) -> dict:
    """32 clients for ``seconds``, SOAK_LARGE_CLIENTS of them sending the largest request, the others one 256-step
    sample: errors, latency by request size, and the server's memory every 10 s."""
    memory = [round(server.rss_mb(), 1)]
    bodies = [LARGEST] * SOAK_LARGE_CLIENTS + [ONE_SAMPLE] * (32 - SOAK_LARGE_CLIENTS)
    measured = asyncio.run(
        closed_loop(server.url, bodies, 32, seconds=seconds, on_tick=lambda: memory.append(round(server.rss_mb(), 1)))
    )
    memory.append(round(server.rss_mb(), 1))
    return {
        **merge([measured]),
        "by_size": measured["by_size"],
        "rss_mb_before": memory[0],
        "rss_mb_after": memory[-1],
        "rss_mb_every_10_s": memory,
    }


def fairness(server: Server, small_requests: int) -> dict:
    """The largest request alone; one client's 1 x 256-step requests, back to back, alone and then while the
    largest request runs."""
    started = time.monotonic()
    large_alone = httpx.post(f"{server.url}/generate", json={**LARGEST, "seed": 0}, timeout=1200).status_code
    large_alone_seconds = round(time.monotonic() - started, 2)
    alone = asyncio.run(closed_loop(server.url, ONE_SAMPLE, 1, requests_per_client=small_requests))
    large: dict = {}

    def send_large() -> None:
        started = time.monotonic()
        response = httpx.post(f"{server.url}/generate", json={**LARGEST, "seed": 1}, timeout=1200)
        large.update(status=response.status_code, seconds=round(time.monotonic() - started, 2))

    thread = threading.Thread(target=send_large)
    thread.start()
    time.sleep(2)  # the large request holds the turn
    latencies = []  # of the small requests sent while the large one runs
    with httpx.Client(base_url=server.url, timeout=1200) as client:
        while thread.is_alive():
            started = time.monotonic()
            response = client.post("/generate", json={**ONE_SAMPLE, "seed": len(latencies)})
            assert response.status_code == 200, response.text
            latencies.append(time.monotonic() - started)
    thread.join()
    return {
        "large_request": LARGEST,
        "large_alone": {"status": large_alone, "seconds": large_alone_seconds},
        "large": large,
        "small_alone": merge([alone]),
        "small_sent_while_large_runs": {"requests": len(latencies), **percentiles(latencies)},
    }


def cpu_seconds(server: Server) -> float:
    root = psutil.Process(server.process.pid)
    return sum(sum(process.cpu_times()[:2]) for process in [root, *root.children(recursive=True)])


def leave_and_watch(server: Server, endpoint: str, body: dict, leave_after: float | None, watch: float = 5.0) -> dict:
    """Send ``body``; leave after ``leave_after`` seconds (None: after the first record); then the server's CPU
    seconds every 0.1 s for ``watch`` seconds, and when it stopped computing: the first moment after which it used
    less than 5% of a core in every 0.5 s."""
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=leave_after or 600) as client:
        try:
            with client.stream("POST", endpoint, json=body) as response:
                for _ in response.iter_lines():
                    if leave_after is None or time.monotonic() - started > leave_after:
                        break
        except httpx.ReadTimeout:
            pass
    left = time.monotonic()
    samples = []
    while (now := time.monotonic()) - left < watch:
        samples.append((now - left, cpu_seconds(server)))
        time.sleep(0.1)
    times, cpu = np.array(samples).T
    stopped = next(
        (
            times[i]
            for i in range(len(times))
            if all(cpu[j] - cpu[i] < 0.05 * (times[j] - times[i]) + 0.025 for j in range(i + 1, len(times)))
        ),
        None,
    )
    info = httpx.get(f"{server.url}/info", timeout=60).json()["serving"]
    return {
        "endpoint": endpoint,
        "request": body,
        "left_after_seconds": round(left - started, 2),
        "cpu_seconds_in_the_first_second": round(float(np.interp(1.0, times, cpu) - cpu[0]), 3),
        "cpu_seconds_from_1_s_to_the_end": round(float(cpu[-1] - np.interp(1.0, times, cpu)), 3),
        "stopped_after_seconds": None if stopped is None else round(float(stopped), 2),
        "watched_seconds": watch,
        "cancelled_so_far": info["cancelled"],
    }


def leaving(server: Server) -> list[dict]:
    return [
        leave_and_watch(server, "/generate", {**LARGEST, "seed": 2}, 3.0),
        leave_and_watch(server, "/generate_stream", {**LARGEST, "seed": 3}, 1.0),
        leave_and_watch(server, "/generate_stream", {"length": 100_000, "seed": 4}, None),
    ]


def first_record_of_a_long_stream(url: str, length: int = 100_000) -> dict:
    """Seconds to the first record of a ``length``-step stream, then the client leaves; whether the
    service stopped sampling (its count of computed pieces stops growing)."""
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=600) as client:
        with client.stream("POST", "/generate_stream", json={"length": length, "seed": 0}) as response:
            next(response.iter_lines())
            first = time.monotonic() - started
    time.sleep(3)
    info = httpx.get(f"{url}/info", timeout=60).json()["serving"]
    time.sleep(2)
    later = httpx.get(f"{url}/info", timeout=60).json()["serving"]
    return {
        "length": length,
        "first_record_seconds": round(first, 2),
        "streams_open_after_leaving": later["streams_open"],
        "pieces_computed": later["pieces_streamed"],
        "stopped": later["pieces_streamed"] == info["pieces_streamed"],
    }


def table(results: dict[str, dict]) -> str:
    rows = [
        "| server | request | clients | requests | p50 s | p95 s | p99 s | steps/s | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, measured in results.items():
        label, request, _ = key.split(" | ")
        rows.append(
            f"| {label} | {request} | {measured['clients']} | {measured['requests']} | {measured['p50']} | "
            f"{measured['p95']} | {measured['p99']} | {measured['steps_per_second']:,.0f} | "
            f"{sum(measured['errors'].values())} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "serving-benchmark.json")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--single-requests", type=int, default=30, help="per server")
    parser.add_argument("--requests-8", type=int, default=48, help="per server")
    parser.add_argument("--requests-32", type=int, default=96, help="per server")
    parser.add_argument("--long-requests", type=int, default=2, help="per server")
    parser.add_argument("--rounds", type=int, default=3, help="turns of the compared servers")
    parser.add_argument("--soak-seconds", type=float, default=300)
    parser.add_argument("--fairness-requests", type=int, default=20, help="1 x 256-step requests alone")
    parser.add_argument(
        "--server-env",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="environment variables for every server (e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument("--baseline", type=Path, help="another checkout of the project, for --sections compare")
    args = parser.parse_args()
    sections = set(args.sections)
    server_env = dict(setting.split("=", 1) for setting in args.server_env)

    import torch

    torch.set_num_threads(1)  # as the service (1 thread on up to 2 cores), so describe_machine says so
    if not args.model_dir.exists():
        train_model(args.model_dir)
    home = Path(tempfile.mkdtemp(prefix="stagediff-bentoml-bench-"))
    os.environ.update({"BENTOML_HOME": str(home), **TELEMETRY_OFF})
    from serving.packaging import store_model

    tag = store_model(args.model_dir, "stagediff", metadata={"dataset": "synthetic", "model_version": "benchmark"})
    log = home / "serve.log"
    started = time.strftime("%Y-%m-%d %H:%M")
    loads = {"start": os.getloadavg()}
    results: dict[str, dict] = {}
    extra: dict[str, object] = {}
    servers = {"batching on": Server(home, tag, log, STAGEDIFF_BATCHING="1", **server_env)}
    if sections & {"table", "long"}:
        servers["batching off"] = Server(home, tag, log, STAGEDIFF_BATCHING="0", **server_env)
    try:
        for server in servers.values():
            asyncio.run(closed_loop(server.url, ONE_SAMPLE, 1, requests_per_client=3))  # warm-up
        extra["serving"] = {label: server.info()["serving"] for label, server in servers.items()}
        if "table" in sections:
            for clients, total in ((1, args.single_requests), (8, args.requests_8), (32, args.requests_32)):
                for label, measured in interleaved(servers, ONE_SAMPLE, clients, total, args.rounds).items():
                    results[f"{label} | 1 x 256 steps | {clients} clients"] = measured
                loads[f"after {clients} clients"] = os.getloadavg()
        if "long" in sections and args.long_requests:
            for label, measured in interleaved(servers, LONG_SAMPLE, 1, args.long_requests, args.long_requests).items():
                results[f"{label} | 1 x 10,016 steps | 1 client"] = measured
            loads["after the long sample"] = os.getloadavg()
        if "batching off" in servers:
            servers.pop("batching off").stop()
        batching = servers["batching on"]
        if "fairness" in sections:
            extra["fairness"] = fairness(batching, args.fairness_requests)
            print("fairness", extra["fairness"], flush=True)
            loads["after the fairness check"] = os.getloadavg()
        if "leaving" in sections:
            extra["leaving"] = leaving(batching)
            print("leaving", extra["leaving"], flush=True)
        if "soak" in sections and args.soak_seconds:
            extra["soak"] = soak(batching, args.soak_seconds)
            print("soak", extra["soak"], flush=True)
            loads["after the soak"] = os.getloadavg()
        if "stream" in sections:
            extra["stream"] = first_record_of_a_long_stream(batching.url)
            print("stream", extra["stream"], flush=True)
        extra["batches"] = {
            key: batching.info()["serving"][key] for key in ("batches", "batched_requests", "cancelled")
        }
        if "compare" in sections:
            if args.baseline is None:
                raise SystemExit("--sections compare needs --baseline DIR, another checkout of the project")
            servers["baseline"] = Server(
                home, tag, log, root=args.baseline.resolve(), STAGEDIFF_BATCHING="1", **server_env
            )
            asyncio.run(closed_loop(servers["baseline"].url, ONE_SAMPLE, 1, requests_per_client=3))
            pair = {f"baseline ({args.baseline})": servers["baseline"], "this tree": batching}
            for clients, total in ((1, args.single_requests), (8, args.requests_8), (32, args.requests_32)):
                for label, measured in interleaved(pair, ONE_SAMPLE, clients, total, args.rounds).items():
                    results[f"{label} | 1 x 256 steps | {clients} clients"] = measured
            extra["compare_fairness"] = {
                label: fairness(server, args.fairness_requests) for label, server in pair.items()
            }
            print("compare fairness", extra["compare_fairness"], flush=True)
            loads["after the comparison"] = os.getloadavg()
        if "threads" in sections:
            servers["2 torch threads"] = Server(
                home, tag, log, STAGEDIFF_BATCHING="1", STAGEDIFF_THREADS="2", **server_env
            )
            asyncio.run(closed_loop(servers["2 torch threads"].url, ONE_SAMPLE, 1, requests_per_client=3))
            pair = {"batching on, 1 torch thread": batching, "batching on, 2 torch threads": servers["2 torch threads"]}
            for label, measured in interleaved(pair, ONE_SAMPLE, 1, args.single_requests, args.rounds).items():
                results[f"{label} | 1 x 256 steps | 1 client"] = measured
            loads["after the threads check"] = os.getloadavg()
    finally:
        for server in servers.values():
            server.stop()
    report = {
        "machine": describe_machine(),
        "started": started,
        "load_average": loads,
        "command": " ".join([".venv/bin/python", "-m", "benchmarks.serving", *sys.argv[1:]]),
        "server_env": server_env,
        "model": {
            "dir": relative(args.model_dir),
            "tag": tag,
            "window": 256,
            "channels": CHANNELS,
            "request": ONE_SAMPLE,
            "long_request": LONG_SAMPLE,
            "largest_request": LARGEST,
        },
        "results": results,
        **extra,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"written to {args.out}; server log {log}")


if __name__ == "__main__":
    main()
