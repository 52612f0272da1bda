"""Models saved by earlier versions still load and give the same samples, byte for byte, for the same seed.

tests/data/model-0.1.0/ is a tiny model saved by stagediff 0.1.0 at commit 732c4aa with :func:`save_reference`
(the tests' tiny configuration with the default skip parametrization, a few steps on the built-in synthetic data)
and tests/data/model-0.1.0-samples.npy holds its samples (:data:`SAMPLES`, the model's own sampler) as that
commit drew them. Both are kept as they were written: to add a model of a newer format, save it beside them
with that version's code instead of rewriting these.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from stagediff import StageDiff, StageDiffConfig
from stagediff.config import RETIRED

DATA = Path(__file__).resolve().parent / "data"
SAMPLES = dict(n=3, length=64, seed=0)


def save_reference(folder: Path, samples: Path) -> None:
    """How the reference model and its samples were made (run once, with the version named in the folder)."""
    from tests.conftest import TINY

    torch.set_num_threads(1)  # as the tests run (tests/conftest.py)
    config = StageDiffConfig(**{**TINY, "skip_parametrization": True}, max_steps=20, checkpoint_every=20)
    model = StageDiff(config).fit("synthetic", progress=False, device="cpu", check=False)
    model.save(folder)
    frame = StageDiff.load(folder).sample(**SAMPLES)
    np.save(samples, frame[model.metadata["channels"]].to_numpy())


def test_a_model_saved_by_0_1_0_loads_and_samples_the_same_bytes():
    saved = json.loads((DATA / "model-0.1.0" / "config.json").read_text())
    assert saved.items() >= RETIRED.items()  # it holds the switches retired since, at their old values
    model = StageDiff.load(DATA / "model-0.1.0")
    frame = model.sample(**SAMPLES)
    expected = np.load(DATA / "model-0.1.0-samples.npy")
    values = frame[model.metadata["channels"]].to_numpy()
    assert values.dtype == expected.dtype and values.shape == expected.shape
    assert values.tobytes() == expected.tobytes()
