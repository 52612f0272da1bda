"""Built-in datasets: a seeded synthetic generator and the three public benchmark files.

The benchmark files (ETTh1, Google stock, exchange rate) are never downloaded by the library: they are
read from a data directory (see :func:`resolve_data_dir`) and checked against a known sha256 so that
every experiment runs on the same bytes as the Stage-Diff paper (arXiv 2508.21330) and its baselines.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from stagediff.errors import DataError

DATA_DIR_ENVIRONMENT_VARIABLE = "STAGEDIFF_DATA_DIR"
SYNTHETIC_CHANNELS: tuple[str, ...] = ("temperature", "load", "wind", "solar", "price")
SYNTHETIC_START = "2020-01-01"
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
HOURS_PER_YEAR = 8760


@dataclass(frozen=True)
class BuiltinDataset:
    """Where a built-in dataset comes from and how to read it.

    ``filename`` and ``sha256`` are ``None`` for datasets generated in memory (``synthetic``).
    """

    name: str
    time_column: str | None
    description: str
    filename: str | None = None
    sha256: str | None = None
    url: str | None = None

    @property
    def is_file(self) -> bool:
        """True when the dataset is read from a file in the data directory."""
        return self.filename is not None


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "synthetic": BuiltinDataset(
        name="synthetic",
        time_column="date",
        description="seeded hourly series with 5 coupled channels, trends, daily/weekly seasonality and drift",
    ),
    "etth1": BuiltinDataset(
        name="etth1",
        time_column="date",
        description="ETTh1 electricity transformer temperature, hourly, 7 channels (Zhou et al., Informer, AAAI 2021)",
        filename="ETTh1.csv",
        sha256="f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
        url="https://github.com/zhouhaoyi/ETDataset/raw/main/ETT-small/ETTh1.csv",
    ),
    "stock": BuiltinDataset(
        name="stock",
        time_column=None,
        description="Google daily stock prices, 6 channels, oldest first (Yoon et al., TimeGAN, NeurIPS 2019)",
        filename="stock_data.csv",
        sha256="134b8a00eb4eefa3242dd7ae85144082da80dedf75a1a656d5d08f97cd95277a",
        url="https://github.com/jsyoon0823/TimeGAN/raw/master/data/stock_data.csv",
    ),
    "exchange": BuiltinDataset(
        name="exchange",
        time_column="date",
        description="daily exchange rates of 8 currencies, Autoformer layout (Lai et al., LSTNet, SIGIR 2018)",
        filename="exchange_rate.csv",
        sha256="d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
        url="https://github.com/laiguokun/multivariate-time-series-data "
        "(Autoformer/Time-Series-Library layout with a `date` column: exchange_rate/exchange_rate.csv)",
    ),
}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Directory that holds the benchmark files.

    Precedence: the explicit ``data_dir`` argument, then the environment variable ``STAGEDIFF_DATA_DIR``
    (ignored when empty), then ``./data`` relative to the current working directory.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_environment = os.environ.get(DATA_DIR_ENVIRONMENT_VARIABLE, "").strip()
    if from_environment:
        return Path(from_environment).expanduser()
    return Path.cwd() / "data"


def find_builtin(name: str) -> BuiltinDataset | None:
    """The built-in dataset called ``name`` (case-insensitive), or ``None``."""
    return BUILTIN_DATASETS.get(name.strip().lower())


def builtin_path(dataset: BuiltinDataset, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of a file-backed built-in dataset after checking that it exists and is unmodified.

    Raises:
        DataError: the file is missing (message names the directory, how to set it and where to download
            the file) or its sha256 differs from the published one.
    """
    if not dataset.is_file:
        raise DataError(f"builtin dataset {dataset.name!r} is generated in memory and has no file")
    directory = resolve_data_dir(data_dir)
    path = directory / dataset.filename
    if not path.is_file():
        raise DataError(
            f"builtin dataset {dataset.name!r} needs the file {dataset.filename!r} in {directory} "
            f"(expected path: {path}), but it is not there. Download it from {dataset.url} into that directory, "
            f"or point the library at the directory that holds it with the data_dir argument "
            f"or the environment variable {DATA_DIR_ENVIRONMENT_VARIABLE}."
        )
    actual = file_sha256(path)
    if actual != dataset.sha256:
        raise DataError(
            f"builtin dataset {dataset.name!r}: {path} has sha256 {actual}, expected {dataset.sha256}; "
            f"the file is modified or a different version. Replace it with the unmodified file from {dataset.url}."
        )
    return path


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def synthetic_frame(length: int = 8760, seed: int = 0) -> pd.DataFrame:
    """A deterministic hourly multivariate series for tests and examples; nothing is downloaded.

    Columns: ``date`` (hourly from 2020-01-01) and 5 coupled channels ``temperature``, ``load``,
    ``wind``, ``solar``, ``price``. The series has

    - linear plus slow nonlinear (annual sinusoid) trends,
    - daily (24 h) and weekly (168 h) seasonalities,
    - AR(1) noise per channel,
    - cross-channel coupling: ``load`` follows lagged ``temperature``; ``price`` is driven by lagged
      ``load``, ``wind`` and ``solar``,
    - a gradual distribution drift: seasonal amplitudes and noise variance grow slowly along the series.

    Args:
        length: number of hourly rows, at least 1.
        seed: seed of the noise; the same seed gives an identical frame, different seeds differ.

    Returns:
        DataFrame of shape (length, 6).
    """
    _check_positive_integer("length", length)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an integer, got {type(seed).__name__}; pass e.g. seed=0")
    rng = np.random.default_rng(int(seed))
    hours = np.arange(length, dtype=np.float64)
    progress = hours / max(length - 1, 1)  # 0 -> 1 along the series, drives the drift
    amplitude = 1.0 + 0.6 * progress
    noise_scale = 0.5 + 1.0 * progress
    daily = 2 * np.pi * hours / HOURS_PER_DAY
    weekly = 2 * np.pi * hours / HOURS_PER_WEEK
    annual = 2 * np.pi * hours / HOURS_PER_YEAR

    temperature = (
        12.0
        + 0.0002 * hours
        + 8.0 * np.sin(annual - 0.5 * np.pi)
        + 4.0 * amplitude * np.sin(daily - 0.6 * np.pi)
        + _ar1_noise(rng, length, 0.9, 0.6 * noise_scale)
    )
    temperature_deviation = _lag(temperature, 2) - 15.0
    load = (
        100.0
        + 0.002 * hours
        + 15.0 * amplitude * np.sin(daily - 0.5 * np.pi)
        + 8.0 * np.cos(weekly)
        + 0.08 * temperature_deviation**2
        + _ar1_noise(rng, length, 0.8, 2.0 * noise_scale)
    )
    wind = 6.0 + 2.0 * np.cos(annual) + 1.5 * np.sin(daily) + _ar1_noise(rng, length, 0.95, 0.8 * noise_scale)
    solar = amplitude * 10.0 * np.clip(np.sin(daily - 0.5 * np.pi), 0.0, None) * (1.0 + 0.3 * np.sin(annual))
    solar = solar + np.abs(_ar1_noise(rng, length, 0.5, 0.3 * noise_scale))
    price = (
        30.0
        + 0.4 * _lag(load, 1)
        - 1.5 * _lag(wind, 1)
        - 0.8 * _lag(solar, 1)
        + 0.001 * hours
        + _ar1_noise(rng, length, 0.7, 1.5 * noise_scale)
    )
    channels = dict(zip(SYNTHETIC_CHANNELS, (temperature, load, wind, solar, price), strict=True))
    dates = pd.date_range(SYNTHETIC_START, periods=length, freq="h", name="date")
    return pd.DataFrame({"date": dates, **channels})


def _ar1_noise(rng: np.random.Generator, length: int, coefficient: float, scale: np.ndarray) -> np.ndarray:
    """AR(1) noise ``e[t] = coefficient * e[t-1] + scale[t] * z[t]`` with standard normal ``z``; shape (length,)."""
    innovations = rng.standard_normal(length) * scale
    return lfilter([1.0], [1.0, -coefficient], innovations)


def _lag(values: np.ndarray, steps: int) -> np.ndarray:
    """``values`` delayed by ``steps`` rows; the first rows repeat the first value. Shape (length,)."""
    if steps == 0 or len(values) == 0:
        return values.copy()
    steps = min(steps, len(values))
    return np.concatenate([np.full(steps, values[0]), values[: len(values) - steps]])


def _check_positive_integer(name: str, value: object) -> None:
    """Raise DataError unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name} must be an integer of at least 1, got {value!r}")
