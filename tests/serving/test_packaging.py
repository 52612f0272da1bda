"""The pipeline's packaging calls: a saved model into the BentoML store with its metadata, and a Bento built
from serving/bentofile.yaml offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml
import pytest
import yaml

from serving.packaging import MODEL_FILES, build_bento, store_model

METADATA = {
    "mlflow_run_id": "abc",
    "registered_model": "stagediff-smooth",
    "model_version": "3",
    "data_hash": "ff",
    "dataset": "smooth",
    "metrics": {"discriminative": 0.2, "boundary": None},
    "limits": {"max_length": 512},
}


def test_store_model_copies_the_folder_and_keeps_the_metadata(bentoml_home, model_dir):
    tag = store_model(model_dir, "stagediff-packaging", metadata=METADATA)
    stored = bentoml.models.get(tag)
    assert tag.startswith("stagediff-packaging:")
    assert stored.info.metadata == {
        **METADATA,
        "metrics": {"discriminative": 0.2},
    }  # the score not computed is left out
    assert all((model_dir / name).read_bytes() == Path(stored.path_of(name)).read_bytes() for name in MODEL_FILES)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"mlflow_run": "abc"}, "unknown model metadata key(s) ['mlflow_run']"),
        ({"metrics": {"discriminative": "good"}}, "metrics must be a flat dict of finite numbers"),
        ({"metrics": {"scores": {"a": 1.0}}}, "metrics must be a flat dict of finite numbers"),
        ({"metrics": {"context_fid": float("nan")}}, "metrics must be a flat dict of finite numbers (or null"),
        ({"metrics": [0.1]}, "metrics must be a flat dict of numbers, got list"),
        ({"metrics_sampling": {"sampler": "euler", "steps": 5}}, "metrics_sampling must be {'sampler': one of"),
        ({"metrics_sampling": {"sampler": "ddpm"}}, "metrics_sampling must be"),
        ({"limits": {"max_steps": 5}}, "unknown request limit key(s) ['max_steps']"),
        ({"limits": {"max_values": -1}}, "request limit max_values must be at least 1"),
    ],
)
def test_store_model_refuses_bad_metadata_before_writing(bentoml_home, model_dir, metadata, message):
    before = len(bentoml.models.list())
    with pytest.raises(ValueError) as error:
        store_model(model_dir, "stagediff-packaging", metadata=metadata)
    assert message in str(error.value) and len(bentoml.models.list()) == before


def test_store_model_refuses_an_incomplete_folder(bentoml_home, model_dir, tmp_path):
    partial = shutil.copytree(model_dir, tmp_path / "partial")
    (partial / "weights.pt").unlink()
    with pytest.raises(ValueError, match=r"missing \['weights.pt'\]"):
        store_model(partial)


@pytest.mark.slow
def test_build_bento_packs_the_service_and_the_model(bentoml_home, model_tag, project_root):
    bento = bentoml.get(build_bento(model_tag, project_root))
    manifest = yaml.safe_load(Path(bento.path_of("bento.yaml")).read_text())
    assert manifest["service"] == "serving.service:StageDiffService"
    assert {"name": "OMP_WAIT_POLICY", "value": "PASSIVE"} in [
        {key: env[key] for key in ("name", "value")} for env in manifest["envs"]
    ]
    assert [model["tag"] for model in manifest["services"][0]["models"]] == [model_tag]
    source = Path(bento.path_of("src"))
    files = {path.relative_to(source).as_posix() for path in source.rglob("*.py")}
    assert {"serving/service.py", "serving/requests.py", "stagediff/generator.py"} <= files
    assert not any(name.startswith("tests/") for name in files)


def test_build_bento_refuses_a_store_inside_the_project(monkeypatch, model_tag, project_root):
    monkeypatch.setenv("BENTOML_HOME", str(project_root / "bentoml-home"))
    with pytest.raises(ValueError, match="lies inside the build context"):
        build_bento(model_tag, project_root)
