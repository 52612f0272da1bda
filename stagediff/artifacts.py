"""Save and load a trained generator: one folder with its configuration, scaler, weights and metadata.

Layout (all JSON but the weights)::

    model/
      config.json     StageDiffConfig.to_dict()
      scaler.json     MinMaxScaler.to_dict()
      metadata.json   channels, time column and frequency, training summary, versions
      weights.pt      the EMA weights of the denoiser (a plain state_dict; loaded with weights_only=True)

Writes go to a temporary sibling folder that replaces the target only when complete, so an
interrupted save never corrupts a model that was already there.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stagediff.config import StageDiffConfig
from stagediff.data import MinMaxScaler
from stagediff.errors import StageDiffError

FILES = ("config.json", "scaler.json", "metadata.json", "weights.pt")
"""What :meth:`StageDiff.save` writes into a model folder; the service packages exactly these."""
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedGenerator:
    config: StageDiffConfig
    scaler: MinMaxScaler
    metadata: dict[str, Any]
    weights: dict[str, torch.Tensor]


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in FILES)


def save_generator(path: str | os.PathLike, saved: SavedGenerator) -> Path:
    target = Path(path)
    if target.exists() and not is_model_dir(target) and (not target.is_dir() or any(target.iterdir())):
        raise StageDiffError(f"{target} exists and is not a stagediff model folder; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.saving-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        (staging / "config.json").write_text(saved.config.to_json())
        (staging / "scaler.json").write_text(json.dumps(saved.scaler.to_dict(), indent=2))
        metadata = {"format_version": FORMAT_VERSION, **saved.metadata}
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
        torch.save({k: v.detach().cpu() for k, v in saved.weights.items()}, staging / "weights.pt")
        backup = target.parent / f".{target.name}.previous-{os.getpid()}"
        if target.exists():
            os.replace(target, backup)
        os.replace(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_generator(path: str | os.PathLike) -> SavedGenerator:
    source = Path(path)
    if not source.is_dir():
        raise StageDiffError(f"no model folder at {source}; train one with `stagediff fit ... --out {source}`")
    missing = [name for name in FILES if not (source / name).is_file()]
    if missing:
        raise StageDiffError(f"{source} is not a complete stagediff model folder: missing {', '.join(missing)}")
    # a model saved before continuations were guided samples as it did
    config = StageDiffConfig.from_dict({"guidance": 0.0} | json.loads((source / "config.json").read_text()))
    scaler = MinMaxScaler.from_dict(json.loads((source / "scaler.json").read_text()))
    metadata = json.loads((source / "metadata.json").read_text())
    if metadata.get("format_version") != FORMAT_VERSION:
        raise StageDiffError(
            f"{source} has model format {metadata.get('format_version')}, this stagediff reads {FORMAT_VERSION}"
        )
    weights = torch.load(source / "weights.pt", map_location="cpu", weights_only=True)
    return SavedGenerator(config=config, scaler=scaler, metadata=metadata, weights=weights)
