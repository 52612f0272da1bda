"""Latency, throughput and stability of the BentoML service against a real `bentoml serve`.

    .venv/bin/python benchmarks/serving.py --out docs/serving-benchmark.json

A window-256 model (default StageDiffConfig, 5 synthetic channels, trained for 50 steps: speed does not
depend on quality; trained once into runs/serving-benchmark/model) is stored in a temporary BentoML home
and served on a free loopback port, once with cross-request batching and once without. Each server
measures /generate for one 256-step sample at 50 DDIM steps with 1, 8 and 32 concurrent clients (each
client sends its next request when the previous one is answered) and one 10,000-step sample; the batching
server also runs a 32-client soak (errors, server RSS before and after) and the time to the first record
of a 100,000-step stream (the client then leaves; the service must stop sampling). A third server, with 2
torch threads, measures the 1-client latency again.

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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before this folder, so that `serving` is the package, not this script

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from machine import describe_machine  # noqa: E402

MODEL_DIR = ROOT / "runs" / "serving-benchmark" / "model"
ONE_SAMPLE = {"n_samples": 1, "length": 256, "steps": 50}
LONG_SAMPLE = {"n_samples": 1, "length": 10_000, "steps": 50}
TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "true"}


def train_model(path: Path) -> None:
    import torch

    from stagediff import StageDiff, StageDiffConfig

    torch.set_num_threads(1)
    StageDiff(StageDiffConfig(max_steps=50)).fit("synthetic", progress=False, device="cpu").save(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`bentoml serve serving.service:StageDiffService` in its own process group."""

    def __init__(self, home: Path, tag: str, log: Path, **settings: str):
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, **TELEMETRY_OFF, "BENTOML_HOME": str(home), "STAGEDIFF_MODEL_TAG": tag,
               "OMP_WAIT_POLICY": "PASSIVE", **settings}
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bentoml", "serve", "serving.service:StageDiffService", "--host", "127.0.0.1",
                 "--port", self.url.rsplit(":", 1)[1]], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True)
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


async def closed_loop(url: str, body: dict, clients: int, requests_per_client: int | None = None,
                      seconds: float | None = None) -> dict:
    """``clients`` concurrent clients, each sending ``body`` again as soon as its previous answer arrived,
    for a number of requests each or for ``seconds``. Latencies of the successful requests; errors counted."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = None if seconds is None else time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one_client(index: int) -> None:
            sent = 0
            while (requests_per_client is None or sent < requests_per_client) and (
                    deadline is None or time.monotonic() < deadline):
                started = time.monotonic()
                try:
                    response = await client.post("/generate", json={**body, "seed": index * 1_000_003 + sent})
                    if response.status_code == 200:
                        latencies.append(time.monotonic() - started)
                    else:
                        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                except httpx.HTTPError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                sent += 1

        started = time.monotonic()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        wall = time.monotonic() - started
    steps = len(latencies) * body["n_samples"] * body["length"]
    return {"clients": clients, "requests": len(latencies), "errors": errors, "seconds": round(wall, 2),
            **percentiles(latencies), "steps_per_second": round(steps / wall, 1)}


def percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "mean": round(float(np.mean(latencies)), 3)}


def first_record_of_a_long_stream(url: str, length: int = 100_000) -> dict:
    """Seconds to the first record of a ``length``-step stream, then the client leaves; whether the
    service stopped sampling (its count of computed pieces stops growing)."""
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=600) as client:
        with client.stream("POST", "/generate_stream", json={"length": length, "seed": 0, "steps": 50}) as response:
            next(response.iter_lines())
            first = time.monotonic() - started
    time.sleep(3)
    info = httpx.get(f"{url}/info", timeout=60).json()["serving"]
    time.sleep(2)
    later = httpx.get(f"{url}/info", timeout=60).json()["serving"]
    return {"length": length, "first_record_seconds": round(first, 2), "streams_open_after_leaving": later["streams_open"],
            "pieces_computed": later["pieces_streamed"], "stopped": later["pieces_streamed"] == info["pieces_streamed"]}


def measure_server(home: Path, tag: str, log: Path, args: argparse.Namespace, label: str, *, full: bool,
                   soak: bool = False, **settings: str) -> dict:
    server = Server(home, tag, log, **settings)
    try:
        result = {"label": label, "settings": settings, "ready_seconds": round(server.ready_seconds, 1)}
        asyncio.run(closed_loop(server.url, ONE_SAMPLE, 1, requests_per_client=3))  # warm-up
        result["serving"] = server.info()["serving"]
        levels = [(1, args.single_requests)] + ([(8, args.requests_8), (32, args.requests_32)] if full else [])
        result["one_sample"] = []
        for clients, total in levels:
            measured = asyncio.run(closed_loop(server.url, ONE_SAMPLE, clients,
                                               requests_per_client=max(1, total // clients)))
            print(label, measured, flush=True)
            result["one_sample"].append(measured)
        if full and args.long_requests:
            result["long_sample"] = asyncio.run(closed_loop(server.url, LONG_SAMPLE, 1,
                                                            requests_per_client=args.long_requests))
            print(label, "10,000 steps", result["long_sample"], flush=True)
        if soak and args.soak_seconds:
            rss_before = server.rss_mb()
            soak = asyncio.run(closed_loop(server.url, ONE_SAMPLE, 32, seconds=args.soak_seconds))
            rss_after = server.rss_mb()
            result["soak"] = {**soak, "rss_mb_before": round(rss_before, 1), "rss_mb_after": round(rss_after, 1)}
            print(label, "soak", result["soak"], flush=True)
        if soak and args.stream:
            result["stream"] = first_record_of_a_long_stream(server.url)
            print(label, "stream", result["stream"], flush=True)
        served = server.info()["serving"]
        result["batches"], result["batched_requests"] = served["batches"], served["batched_requests"]
        return result
    finally:
        server.stop()


def table(results: list[dict]) -> str:
    rows = ["| server | clients | requests | p50 s | p95 s | p99 s | steps/s | errors |", "|---|---|---|---|---|---|---|---|"]
    for result in results:
        for measured in result["one_sample"]:
            rows.append(f"| {result['label']} | {measured['clients']} | {measured['requests']} | {measured['p50']} | "
                        f"{measured['p95']} | {measured['p99']} | {measured['steps_per_second']:,.0f} | "
                        f"{sum(measured['errors'].values())} |")
        if "long_sample" in result:
            measured = result["long_sample"]
            rows.append(f"| {result['label']}, one 10,000-step sample | 1 | {measured['requests']} | {measured['p50']} | "
                        f"{measured['p95']} | {measured['p99']} | {measured['steps_per_second']:,.0f} | "
                        f"{sum(measured['errors'].values())} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serving-benchmark.json")
    parser.add_argument("--single-requests", type=int, default=30)
    parser.add_argument("--requests-8", type=int, default=48)
    parser.add_argument("--requests-32", type=int, default=96)
    parser.add_argument("--long-requests", type=int, default=3)
    parser.add_argument("--soak-seconds", type=float, default=120)
    parser.add_argument("--no-stream", dest="stream", action="store_false")
    parser.add_argument("--no-threads-check", dest="threads_check", action="store_false")
    args = parser.parse_args()

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
    load_before = os.getloadavg()
    results = [measure_server(home, tag, log, args, "batching on", full=True, soak=True, STAGEDIFF_BATCHING="1"),
               measure_server(home, tag, log, args, "batching off", full=True, STAGEDIFF_BATCHING="0")]
    if args.threads_check:
        results.append(measure_server(home, tag, log, args, "batching on, 2 torch threads", full=False,
                                      STAGEDIFF_BATCHING="1", STAGEDIFF_THREADS="2"))
    report = {"machine": describe_machine(), "started": started, "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "command": " ".join([".venv/bin/python", *sys.argv]),
              "model": {"dir": str(args.model_dir), "tag": tag, "window": 256, "channels": 5, "request": ONE_SAMPLE},
              "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"written to {args.out}; server log {log}")


if __name__ == "__main__":
    main()
