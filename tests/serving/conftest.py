"""Fixtures of the serving tests: a temporary BentoML home, a tiny model trained here and stored there, and
the service class built on it in this process.

BENTOML_HOME is read once, when BentoML first needs its store; it is set here, before bentoml is imported
(and pointed at again should another test module have imported bentoml first).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

BENTOML_HOME = Path(tempfile.mkdtemp(prefix="stagediff-bentoml-test-"))
TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "true"}
os.environ.update({"BENTOML_HOME": str(BENTOML_HOME), **TELEMETRY_OFF})

import pytest  # noqa: E402

from stagediff import StageDiff, StageDiffConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "stagediff-test"
LIMITS = {"max_length": 20_000, "max_samples": 16, "max_values": 40_000, "max_cost": 50_000}
"""Small enough that no fuzzed request keeps the tiny model busy for more than seconds (at most about 220 network
evaluations); max_values below max_cost, so that either can be the limit a request meets."""
METADATA = {
    "mlflow_run_id": "0123456789abcdef",
    "registered_model": "stagediff-smooth",
    "model_version": "7",
    "data_hash": "feedc0de",
    "dataset": "smooth",
    "metrics": {"discriminative": 0.12, "context_fid": 0.5},
    "metrics_sampling": {"sampler": "ddim", "steps": 5},
    "limits": LIMITS,
}
TRAINING_STEPS = 30


def root_conftest():
    """tests/conftest.py as a module (imported by path: both conftest files are named conftest)."""
    spec = importlib.util.spec_from_file_location("stagediff_tests_root_conftest", ROOT / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROOT_CONFTEST = root_conftest()
TINY = ROOT_CONFTEST.TINY


def point_bentoml_at(home: Path) -> None:
    """Make an already imported bentoml use ``home`` (its store locations are computed once and kept)."""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    BentoMLContainer.bentoml_home.set(str(home))
    BentoMLContainer.model_store_dir.set(str(home / "models"))
    BentoMLContainer.bento_store_dir.set(str(home / "bentos"))
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    BentoMLContainer.bento_store.set(BentoStore(str(home / "bentos")))


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(BENTOML_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    for folder in ("models", "bentos", "envs", "tmp"):
        (BENTOML_HOME / folder).mkdir(parents=True, exist_ok=True)
    point_bentoml_at(BENTOML_HOME)
    return BENTOML_HOME


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, training_frame) -> Path:
    """A tiny hourly two-channel model (channels a and b, about 100..200), saved with StageDiff.save."""
    config = StageDiffConfig(
        **TINY, max_steps=TRAINING_STEPS, checkpoint_every=TRAINING_STEPS, validation_fraction=0.2, learning_rate=3e-3
    )
    model = StageDiff(config).fit(training_frame, "date", progress=False, device="cpu")
    return model.save(tmp_path_factory.mktemp("served") / "model")


@pytest.fixture(scope="session")
def model_tag(bentoml_home, model_dir) -> str:
    """The tiny model in the temporary store, with the metadata the pipeline writes."""
    from serving.packaging import store_model

    return store_model(model_dir, MODEL_NAME, metadata=METADATA)


@pytest.fixture(scope="session")
def service_module(model_tag):
    """serving.service, imported with STAGEDIFF_MODEL_TAG naming the tiny model (read on import only; the
    variable is restored afterwards, so that it does not leak into other tests' subprocesses)."""
    previous = os.environ.get("STAGEDIFF_MODEL_TAG")
    os.environ["STAGEDIFF_MODEL_TAG"] = model_tag
    try:
        if "serving.service" in sys.modules:
            return importlib.reload(sys.modules["serving.service"])
        return importlib.import_module("serving.service")
    finally:
        if previous is None:
            del os.environ["STAGEDIFF_MODEL_TAG"]
        else:
            os.environ["STAGEDIFF_MODEL_TAG"] = previous


@pytest.fixture(scope="session")
def service(service_module):
    """An instance of the service class in this process, as BentoML creates it in a worker."""
    return service_module.StageDiffService()


@pytest.fixture(scope="session")
def served_model(model_dir) -> StageDiff:
    return StageDiff.load(model_dir)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def serving_env(model_tag, bentoml_home) -> dict[str, str]:
    """The environment of a `bentoml serve` or `bentoml build` of the tiny model (telemetry off), without
    OMP_WAIT_POLICY: the service sets it for its worker (test_live.py checks)."""
    inherited = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    return {**inherited, **TELEMETRY_OFF, "BENTOML_HOME": str(bentoml_home), "STAGEDIFF_MODEL_TAG": model_tag}
