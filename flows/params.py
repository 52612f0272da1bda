"""The pipeline's parameters: params.yaml, one section per concern (dvc.yaml reads them per key), each typed and
validated like StageDiffConfig (stagediff.settings: unknown keys and wrong types are errors); ``model`` *is* a
StageDiffConfig and ``package`` holds the service's request limits (serving.requests.RequestLimits)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.requests import RequestLimits
from stagediff.config import StageDiffConfig
from stagediff.errors import ConfigError
from stagediff.settings import check_types, known_keywords, read_mapping, reject_unknown, require


@known_keywords
@dataclass(frozen=True)
class DataParams:
    """Where the data comes from and what the validate stage demands of it."""

    source: str = "synthetic"
    """A built-in name (synthetic, etth1, stock, exchange: the benchmark files are read from the data directory,
    STAGEDIFF_DATA_DIR), a path to a .csv/.parquet file, or an http(s) URL of one (downloaded at ingest)."""
    time_column: str | None = None
    """The time column; None: the built-in's own, or no time column for a file."""
    columns: tuple[str, ...] | None = None
    """The channel columns to model, in this order; None: every column but the time column."""
    frequency: str | None = None
    """The declared step between rows (a pandas offset such as "1h" or "1D"); None: the data's most common step,
    and every step must equal it."""
    max_missing_fraction: float = 0.0
    """Largest share of missing values (NaN) allowed per channel; above 0 needs model.missing: interpolate or mask."""

    def __post_init__(self) -> None:
        check_types(self, "data key")
        require(bool(self.source), "data.source must name a dataset, a file or a URL")
        require(
            0.0 <= self.max_missing_fraction < 1.0,
            f"data.max_missing_fraction must be in [0, 1), got {self.max_missing_fraction}",
        )


@known_keywords
@dataclass(frozen=True)
class EvaluateParams:
    """The evaluate stage: held-out protocol (docs/evaluation.md)."""

    windows: int = 100
    """Real held-out windows scored (as many synthetic ones are sampled)."""
    repeats: int = 1
    fast: bool = True
    """Shorter judge training (metrics.evaluate fast mode); False for publishable numbers."""
    seed: int = 0
    steps: int | None = None
    """Sampler steps for the samples; None: the model's own (stagediff.diffusion.sampling_choice)."""

    def __post_init__(self) -> None:
        check_types(self, "evaluate key")
        require(self.windows >= 10, f"evaluate.windows must be at least 10, got {self.windows}")
        require(self.repeats >= 1, f"evaluate.repeats must be at least 1, got {self.repeats}")


@known_keywords
@dataclass(frozen=True)
class PackageParams(RequestLimits):
    """The package stage: the model's name and the request limits the service enforces (RequestLimits)."""

    name: str = "stagediff"
    """Name of the MLflow registered model and of the BentoML model and service."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_types(self, "package key")
        require(
            self.name.replace("_", "").replace("-", "").isalnum() and self.name == self.name.lower(),
            f"package.name must be lower-case letters, digits, '-' or '_', got {self.name!r}",
        )


@known_keywords
@dataclass(frozen=True)
class RetrainParams:
    """Scheduled retraining (flows/retrain.py): when it runs and when a new model (challenger) replaces the
    serving one (champion)."""

    cron: str = "0 3 * * 1"
    """When the deployment runs (cron syntax, in UTC); default Mondays 03:00 UTC."""
    metrics: tuple[str, ...] = ("detection", "texture", "predictive")
    """Held-out metrics (lower is better) compared on the same data; each must pass the margin (the detection AUC
    and the texture error see what the noisy GRU discriminative score misses, docs/evaluation.md)."""
    margin: float = 0.05
    """The challenger may be worse than the champion by at most this fraction on each metric."""
    alias: str = "champion"
    """MLflow registry alias of the serving model version."""

    def __post_init__(self) -> None:
        check_types(self, "retrain key")
        require(
            len(self.cron.split()) == 5,
            f"retrain.cron must have 5 fields (minute hour day month weekday), got {self.cron!r}",
        )
        require(len(self.metrics) >= 1, "retrain.metrics needs at least one metric")
        require(0.0 <= self.margin < 1.0, f"retrain.margin must be in [0, 1), got {self.margin}")
        require(
            self.alias.replace("_", "").replace("-", "").isalnum(),
            f"retrain.alias must be letters, digits, '-' or '_', got {self.alias!r}",
        )


@known_keywords
@dataclass(frozen=True)
class PipelineParams:
    """params.yaml: the sections data, model (a StageDiffConfig), evaluate, package and retrain."""

    data: DataParams = dataclasses.field(default_factory=DataParams)
    model: StageDiffConfig = dataclasses.field(default_factory=StageDiffConfig)
    evaluate: EvaluateParams = dataclasses.field(default_factory=EvaluateParams)
    package: PackageParams = dataclasses.field(default_factory=PackageParams)
    retrain: RetrainParams = dataclasses.field(default_factory=RetrainParams)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineParams:
        reject_unknown(cls, data, "params.yaml section")
        sections = {}
        for f in dataclasses.fields(cls):
            section = data.get(f.name) or {}
            if not isinstance(section, dict):
                raise ConfigError(f"params.yaml section {f.name!r} must be a mapping, got {section!r}")
            kind = typing.get_type_hints(cls)[f.name]
            if kind is StageDiffConfig:
                sections[f.name] = StageDiffConfig.from_dict(section)
            else:
                reject_unknown(kind, section, f"{f.name}")
                sections[f.name] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
        return cls(**sections)

    @classmethod
    def from_file(cls, path: str | Path = "params.yaml") -> PipelineParams:
        return cls.from_dict(read_mapping(path))

    def to_dict(self) -> dict[str, Any]:
        sections = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {
            name: value.to_dict()
            if name == "model"
            else {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}
            for name, value in sections.items()
        }
