"""The pipeline stages' logic as plain functions (no DVC, no Prefect server): ingest, validate, segment, and
the helpers of train and evaluate. The whole pipeline runs end to end in test_pipeline.py."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import Flow

import flows
from flows.evaluate import flat_metrics
from flows.ingest import ingest
from flows.params import DataParams, PipelineParams
from flows.segment import segment
from flows.source import write_stamp
from flows.train import checkpoint_folder
from flows.validate import ValidationFailed, validate
from stagediff.data import load_prepared
from stagediff.data.builtin import BUILTIN_DATASETS, resolve_data_dir
from stagediff.data.expectations import required_rows
from stagediff.data.ingest import source_stamp
from stagediff.errors import ConfigError, DataError
from stagediff.runtime import default_threads


def hourly(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "time": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
            "a": rng.normal(10, 2, rows),
            "b": rng.normal(-5, 1, rows),
        }
    )


def params(**data) -> PipelineParams:
    return PipelineParams.from_dict(
        {
            "data": {"time_column": "time", **data},
            "model": {
                "window": 32,
                "stage_length": 8,
                "context": 2,
                "patch_length": 4,
                "patch_stride": 2,
                "validation_fraction": 0.2,
            },
        }
    )


@pytest.fixture
def stage_paths(tmp_path):
    names = ("raw.parquet", "raw.json", "validation.json", "validation.md", "prepared")
    return {name: tmp_path / name for name in names}


def ingest_frame(frame: pd.DataFrame, tmp_path, stage_paths, **data) -> PipelineParams:
    source = tmp_path / "source.csv"
    frame.to_csv(source, index=False)
    chosen = params(source=str(source), **data)
    ingest(chosen.data, stage_paths["raw.parquet"], stage_paths["raw.json"])
    return chosen


def run_validate(chosen: PipelineParams, stage_paths) -> dict:
    return validate(
        chosen,
        stage_paths["raw.parquet"],
        stage_paths["raw.json"],
        stage_paths["validation.json"],
        stage_paths["validation.md"],
    )


# ----------------------------------------------------------------------------------------------------- ingest


def test_ingest_writes_the_table_and_its_description(tmp_path, stage_paths):
    frame = hourly()
    chosen = ingest_frame(frame, tmp_path, stage_paths)
    written = pd.read_parquet(stage_paths["raw.parquet"])
    pd.testing.assert_frame_equal(written, pd.read_csv(tmp_path / "source.csv"))
    description = json.loads(stage_paths["raw.json"].read_text())
    assert description["rows"] == 400 and description["time_column"] == "time"
    assert set(description["columns"]) == {"time", "a", "b"}
    assert description["time_range"] == {"first": "2024-01-01 00:00:00", "last": "2024-01-17 15:00:00"}
    again = ingest(chosen.data, tmp_path / "again.parquet", tmp_path / "again.json")
    assert again["content_hash"] == description["content_hash"]  # same data, same hash
    frame.loc[3, "a"] += 1
    assert (
        ingest_frame(frame, tmp_path, stage_paths)
        and json.loads(stage_paths["raw.json"].read_text())["content_hash"] != description["content_hash"]
    )


def test_ingest_keeps_the_time_column_and_the_chosen_channels_in_their_order(tmp_path, stage_paths):
    ingest_frame(hourly().assign(note="x"), tmp_path, stage_paths, columns=("b", "a"))
    assert list(pd.read_parquet(stage_paths["raw.parquet"]).columns) == ["time", "b", "a"]
    with pytest.raises(DataError, match=r"column\(s\) \[c\] named in columns are not in the data"):
        ingest_frame(hourly(), tmp_path, stage_paths, columns=("a", "c"))


def test_ingest_reads_a_builtin_dataset(stage_paths):
    description = ingest(DataParams(source="synthetic"), stage_paths["raw.parquet"], stage_paths["raw.json"])
    assert description["rows"] == 8760 and description["time_column"] == "date"


def test_ingest_downloads_a_url(tmp_path, stage_paths):
    hourly().to_csv(tmp_path / "served.csv", index=False)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/served.csv"
        description = ingest(
            DataParams(source=url, time_column="time"), stage_paths["raw.parquet"], stage_paths["raw.json"]
        )
        assert description["rows"] == 400 and description["source"] == url
        with pytest.raises(DataError, match="could not download"):
            ingest(DataParams(source=url.replace("served", "absent")), tmp_path / "x.parquet", tmp_path / "x.json")
    finally:
        server.shutdown()


class ETagHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that sends an ETag (the file's sha256, as many servers derive it from the content)."""

    def end_headers(self):
        path = Path(self.translate_path(self.path))
        if path.is_file():
            self.send_header("ETag", f'"{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"')
        super().end_headers()

    def log_message(self, *args):
        pass


def serve_folder(folder, handler=ETagHandler) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_url_source_records_its_etag_and_the_sha256_of_what_was_downloaded(tmp_path, stage_paths):
    served = tmp_path / "served.csv"
    hourly().to_csv(served, index=False)
    server = serve_folder(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.server_port}/served.csv"
        first = ingest(DataParams(source=url, time_column="time"), stage_paths["raw.parquet"], stage_paths["raw.json"])
        content = served.read_bytes()
        expected_etag = f'"{hashlib.sha256(content).hexdigest()[:16]}"'
        assert first["origin"] == {
            "kind": "url",
            "source": url,
            "etag": expected_etag,
            "sha256": hashlib.sha256(content).hexdigest(),
            "bytes": len(content),
        }
        assert json.loads(stage_paths["raw.json"].read_text())["origin"] == first["origin"]
        hourly(seed=1).to_csv(served, index=False)  # the remote file changes: a forced ingest records the new one
        second = ingest(DataParams(source=url, time_column="time"), stage_paths["raw.parquet"], stage_paths["raw.json"])
        assert second["origin"]["etag"] != first["origin"]["etag"]
        assert second["origin"]["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
        assert second["origin"]["sha256"] != first["origin"]["sha256"]
        assert source_stamp(url) == {"kind": "url", "source": url}  # the stamp does not download
    finally:
        server.shutdown()
    no_etag = serve_folder(tmp_path, http.server.SimpleHTTPRequestHandler)  # sends Last-Modified, no ETag
    try:
        url = f"http://127.0.0.1:{no_etag.server_port}/served.csv"
        origin = ingest(DataParams(source=url, time_column="time"), tmp_path / "x.parquet", tmp_path / "x.json")[
            "origin"
        ]
        assert origin["etag"] is None and origin["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    finally:
        no_etag.shutdown()


def test_the_source_stamp_changes_with_the_content_of_a_file_and_only_then(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvc runs stages in the project root: a relative path is kept as named
    hourly().to_csv("own.csv", index=False)
    stamp = source_stamp("own.csv")
    assert stamp == {
        "kind": "file",
        "source": "own.csv",
        "sha256": hashlib.sha256(Path("own.csv").read_bytes()).hexdigest(),
        "bytes": Path("own.csv").stat().st_size,
    }
    assert source_stamp("own.csv") == stamp  # nothing changed, same stamp
    Path("own.csv").touch()
    assert source_stamp("own.csv") == stamp  # a new modification time alone is no change
    lines = Path("own.csv").read_text().splitlines()
    lines[5] = lines[5][:-1] + ("1" if lines[5][-1] != "1" else "2")  # one digit of one value
    Path("own.csv").write_text("\n".join(lines) + "\n")
    assert source_stamp("own.csv")["sha256"] != stamp["sha256"]
    # written by the source stage, from params.yaml
    (tmp_path / "params.yaml").write_text("data:\n  source: own.csv\n  time_column: time\n")
    assert write_stamp(tmp_path / "params.yaml", tmp_path / "data" / "source.json") == source_stamp("own.csv")
    assert json.loads((tmp_path / "data" / "source.json").read_text()) == source_stamp("own.csv")


def test_the_source_stamp_of_a_builtin_is_its_name_and_published_hash_wherever_its_folder_is(tmp_path):
    assert source_stamp("synthetic") == source_stamp("Synthetic") == {"kind": "builtin", "source": "synthetic"}
    etth1 = BUILTIN_DATASETS["etth1"]
    (tmp_path / etth1.filename).write_text("date,a\n2020-01-01,1\n")
    with pytest.raises(DataError, match="expected " + etth1.sha256):
        source_stamp("etth1", data_dir=tmp_path)  # a modified benchmark file is refused, as ingest refuses it
    if not (resolve_data_dir() / etth1.filename).is_file():
        pytest.skip(f"{etth1.filename} is not in {resolve_data_dir()} (STAGEDIFF_DATA_DIR)")
    assert source_stamp("etth1") == {
        "kind": "builtin",
        "source": "etth1",
        "file": etth1.filename,
        "sha256": etth1.sha256,
    }


def test_the_source_stamp_of_a_missing_file_says_so(tmp_path):
    with pytest.raises(DataError, match="no-such-file.csv"):
        source_stamp(str(tmp_path / "no-such-file.csv"))
    with pytest.raises(DataError, match="not a builtin dataset"):
        source_stamp("no-such-dataset")


def test_ingest_of_an_unknown_source_names_it_and_writes_nothing(stage_paths):
    with pytest.raises(DataError, match="no-such-file.csv"):
        ingest(DataParams(source="no-such-file.csv"), stage_paths["raw.parquet"], stage_paths["raw.json"])
    assert not stage_paths["raw.parquet"].exists() and not stage_paths["raw.json"].exists()


# --------------------------------------------------------------------------------------------------- validate


def test_good_data_passes_every_expectation_and_records_ranges(tmp_path, stage_paths):
    report = run_validate(ingest_frame(hourly(), tmp_path, stage_paths), stage_paths)
    assert report["success"] and report["failed"] == []
    kinds = {r["type"] for r in report["expectations"]}
    assert {
        "expect_column_values_to_be_increasing",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_in_type_list",
        "expect_table_row_count_to_be_between",
    } <= kinds
    assert report["channel_ranges"]["a"]["min"] < 10 < report["channel_ranges"]["a"]["max"]
    assert "PASSED" in stage_paths["validation.md"].read_text()


def test_duplicates_nans_and_text_are_each_named_with_example_rows(tmp_path, stage_paths):
    frame = hourly()
    frame.loc[10, "time"] = frame.loc[9, "time"]  # a duplicate timestamp
    frame.loc[20, "a"] = np.nan  # a missing value
    frame["note"] = "text"  # a text column
    chosen = ingest_frame(frame, tmp_path, stage_paths)
    with pytest.raises(ValidationFailed) as failure:
        run_validate(chosen, stage_paths)
    message = str(failure.value)
    assert "no duplicate timestamps in 'time'" in message and "row=10" in message
    assert "channel 'a' has at most 0.0% missing values" in message and "row=20" in message
    assert "channel 'note' is numeric" in message
    assert "'time' is strictly increasing" in message
    report = json.loads(stage_paths["validation.json"].read_text())
    assert report["success"] is False and len(report["failed"]) >= 4
    assert "**failed**" in stage_paths["validation.md"].read_text()


def test_gaps_unparseable_times_and_too_few_rows_are_named(tmp_path, stage_paths):
    frame = hourly(60).drop(index=[30])  # a missing hour: irregular step
    frame.loc[5, "time"] = "not a time"
    with pytest.raises(ValidationFailed) as failure:
        run_validate(ingest_frame(frame, tmp_path, stage_paths), stage_paths)
    message = str(failure.value)
    assert "a regular step of 1 hour" in message
    assert "every value of 'time' parses as a time" in message and "not a time" in message
    assert "enough rows" in message and "observed 59" in message
    assert required_rows(32, 0.2) == 205


def test_a_declared_frequency_is_enforced(tmp_path, stage_paths):
    chosen = ingest_frame(hourly(), tmp_path, stage_paths, frequency="30min")
    with pytest.raises(ValidationFailed, match="regular step of 30 minutes"):
        run_validate(chosen, stage_paths)
    with pytest.raises(ConfigError, match="not a fixed pandas frequency"):
        run_validate(ingest_frame(hourly(), tmp_path, stage_paths, frequency="1MS"), stage_paths)


def test_missing_values_within_the_declared_policy_pass(tmp_path, stage_paths):
    frame = hourly()
    frame.loc[[5, 50], "b"] = np.nan
    with pytest.raises(ConfigError, match="interpolate"):
        run_validate(ingest_frame(frame, tmp_path, stage_paths, max_missing_fraction=0.01), stage_paths)
    source = tmp_path / "source.csv"
    chosen = PipelineParams.from_dict(
        {
            **params().to_dict(),
            "data": {"source": str(source), "time_column": "time", "max_missing_fraction": 0.01},
            "model": {**params().model.to_dict(), "missing": "interpolate"},
        }
    )
    assert run_validate(chosen, stage_paths)["success"]


# ---------------------------------------------------------------------------------------------------- segment


def test_segment_splits_by_time_then_scales_on_the_training_part(tmp_path, stage_paths):
    chosen = ingest_frame(hourly(), tmp_path, stage_paths)
    summary = segment(chosen.model, stage_paths["raw.parquet"], stage_paths["raw.json"], stage_paths["prepared"])
    assert summary == {
        "train_rows": 320,
        "validation_rows": 80,
        "channels": 2,
        "window": 32,
        "stages": 4,
        "train_windows": 289,
        "validation_windows": 49,
    }
    prepared = load_prepared(stage_paths["prepared"])
    assert prepared.train.min() == pytest.approx(-1) and prepared.train.max() == pytest.approx(1)
    original = hourly()[["a", "b"]].to_numpy()
    np.testing.assert_allclose(prepared.scaler.inverse_transform(prepared.validation), original[320:])
    with np.load(stage_paths["prepared"] / "windows.npz") as windows:
        assert windows["train"].shape == (289, 4, 8, 2) and windows["validation"].shape == (49, 4, 8, 2)
        np.testing.assert_allclose(windows["train"][1].reshape(32, 2), prepared.train[1:33], rtol=1e-6)
    assert prepared.description["channels"] == ["a", "b"] and prepared.description["training_rows"] == 320


# ---------------------------------------------------------------------------------------- train and evaluate


def test_checkpoints_are_kept_per_parameters_data_and_code(tmp_path, stage_paths, monkeypatch):
    chosen = ingest_frame(hourly(), tmp_path, stage_paths)
    segment(chosen.model, stage_paths["raw.parquet"], stage_paths["raw.json"], stage_paths["prepared"])
    prepared = load_prepared(stage_paths["prepared"])
    first = checkpoint_folder(chosen, prepared, tmp_path)
    assert checkpoint_folder(chosen, prepared, tmp_path) == first
    changed = PipelineParams.from_dict({**chosen.to_dict(), "model": {**chosen.model.to_dict(), "max_steps": 7}})
    assert checkpoint_folder(changed, prepared, tmp_path) != first
    fingerprint = flows.train.code_fingerprint()
    assert len(fingerprint) == 64 and flows.train.code_fingerprint() == fingerprint
    monkeypatch.setattr(flows.train, "code_fingerprint", lambda: "the library changed")
    assert checkpoint_folder(chosen, prepared, tmp_path) != first  # a run of other code is not resumed


def test_flat_metrics_keep_numbers_only():
    scores = {"discriminative": {"mean": 0.25, "std": 0.01}, "boundary": {"mean": None}, "settings": {"n": 3}}
    assert flat_metrics(scores, repeats=1) == {"discriminative": 0.25}
    assert flat_metrics(scores, repeats=3) == {"discriminative": 0.25, "discriminative_std": 0.01}


# ---------------------------------------------------------------------------------------------------- threads


def test_every_flow_sets_torch_threads_by_the_library_rule_whatever_omp_num_threads_says():
    modules = [importlib.import_module(f"flows.{module.name}") for module in pkgutil.iter_modules(flows.__path__)]
    found = {value.name: value for module in modules for value in vars(module).values() if isinstance(value, Flow)}
    assert set(found) == {"ingest", "validate", "segment", "train", "evaluate", "package", "retrain"}
    assert [name for name, flow in found.items() if not getattr(flow.fn, "sets_threads", False)] == [], (
        "decorate every flow with flows.common.pipeline_flow"
    )
    # What a flow's body sees, in a fresh process that asks for more threads (the six stages' real processes are
    # checked the same way in test_pipeline.py; a deployment's run is such a fresh process too).
    probe = (
        "import torch\nfrom flows.common import pipeline_flow\n"
        "@pipeline_flow('probe')\ndef probe():\n    return torch.get_num_threads()\n"
        "print(torch.get_num_threads(), probe.fn())"
    )
    environment = {**os.environ, "OMP_NUM_THREADS": str(default_threads() + 1)}
    shown = subprocess.run(
        [sys.executable, "-c", probe], cwd=flows.PROJECT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert shown.stdout.split() == [str(default_threads() + 1), str(default_threads())]


# ------------------------------------------------------------------------------------------------ environment

FIRST_READ = """
import json, os, runpy, subprocess, sys


def report(event):
    print(json.dumps({"event": event, "environment": dict(os.environ)}), flush=True)
    os._exit(0)


class FirstReader:
    \"\"\"Ends the process at the first import of a module that reads its settings from the environment once.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name in {"prefect", "mlflow", "torch", "great_expectations", "bentoml"}:
            report(name)


sys.meta_path.insert(0, FirstReader())
subprocess.Popen = lambda *args, **kwargs: report("subprocess")  # flows.repro starts dvc (or a server) first
runpy.run_module(sys.argv[1], run_name=sys.argv[2], alter_sys=True)
report("end")
"""


def programs() -> list[str]:
    """The flows modules run as ``python -m flows.X``, but flows.source, which imports none of those modules and
    sets nothing (run as a program here, it would rewrite data/source.json)."""
    return [
        f"flows.{module.name}"
        for module in pkgutil.iter_modules(flows.__path__)
        if 'if __name__ == "__main__"' in (Path(flows.__path__[0]) / f"{module.name}.py").read_text()
        and module.name != "source"
    ]


def first_read(module: str, run_name: str) -> dict:
    """What the environment holds when ``module``, run as ``run_name``, first imports prefect, mlflow, torch, great
    expectations or bentoml, or starts a process; started without flows.ENVIRONMENT."""
    environment = {name: value for name, value in os.environ.items() if name not in flows.ENVIRONMENT}
    environment["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # flows.repro: no server of its own
    shown = subprocess.run(
        [sys.executable, "-c", FIRST_READ, module, run_name],
        cwd=flows.PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    return json.loads(shown.stdout.splitlines()[-1])  # flows.repro says first that its server is ready


def test_every_program_sets_the_environment_before_prefect_mlflow_and_torch_read_it():
    assert {"flows.ingest", "flows.train", "flows.package", "flows.repro", "flows.retrain"} <= set(programs())
    for module in programs():
        seen = first_read(module, "__main__")
        assert {name: seen["environment"].get(name) for name in flows.ENVIRONMENT} == flows.ENVIRONMENT, (
            module,
            seen["event"],
        )


def test_importing_flows_sets_nothing():
    probe = (
        "import json, os, pkgutil, importlib\nbefore = dict(os.environ)\nimport flows\n"
        "for module in pkgutil.iter_modules(flows.__path__):\n    importlib.import_module(f'flows.{module.name}')\n"
        "print(json.dumps(sorted(name for name in {*before, *os.environ} if before.get(name) != os.environ.get(name))))"
    )
    environment = {name: value for name, value in os.environ.items() if name not in flows.ENVIRONMENT}
    shown = subprocess.run(
        [sys.executable, "-c", probe], cwd=flows.PROJECT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    # mlflow notes its telemetry session on import (_MLFLOW_TELEMETRY_SESSION_ID) where telemetry is not disabled.
    assert [name for name in json.loads(shown.stdout) if not name.startswith("_MLFLOW_")] == []
