"""The user-facing generator: denoiser + sampler + scaler, in the data's own units.

``StageDiff(config).fit(data)`` splits by time, scales on the training split, trains; ``sample`` returns
synthetic series as a long DataFrame (or an array) in data units with timestamps that continue the
training frequency; ``save``/``load`` round-trip everything needed to sample again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import stagediff
from stagediff.artifacts import SavedGenerator, load_generator, save_generator
from stagediff.calendar import calendar_features, local_time, series_times
from stagediff.config import SAMPLERS, StageDiffConfig
from stagediff.data import MinMaxScaler, PreparedData, load_series, prepare, sliding_windows, validate_frame
from stagediff.data.prepared import decode_frequency, decode_time
from stagediff.data.rules import describe_step, iso_timestamp
from stagediff.diffusion import Noise, Sampler, make_sampler, sampling_choice
from stagediff.errors import DataError, StageDiffError
from stagediff.model import StageDiffDenoiser
from stagediff.recipe import data_choices, held_bounds
from stagediff.sampling import chunk_plan, generate_chunks, round_up
from stagediff.train import Trainer, TrainProgress, build_denoiser, resolve_device

logger = logging.getLogger(__name__)

SAMPLE_COLUMN = "sample"
STEP_COLUMN = "step"
MAX_SAMPLE_VALUES = 200_000_000
"""Largest n * length * channels one call may produce (1.6 GB as float64); ask for more in several calls."""
SAMPLING_BATCH = 256
CHECK_WINDOWS = 32
"""Windows sampled after fit to check the channel structure and texture (seconds on a CPU)."""
PREFIX_RANGES = 10
"""A prefix value may lie at most this many training ranges below a channel's training minimum or above its maximum
(scaled, within +-(1 + 2 * PREFIX_RANGES)): far beyond, the model only sees nonsense, and from about 1e19 ranges on
its float32 arithmetic overflows into NaN."""
CHUNK_WINDOWS = 4
"""Default chunk for long samples, in training windows: 4 made one 10,000-step series 1.3x faster than 1
(fewer overlapping steps recomputed, fewer small calls; results/decisions.md, "Speed of the library; threads")."""


@dataclass(frozen=True)
class SampleRequest:
    """One request of :meth:`StageDiff.sample_many`: the arguments of :meth:`StageDiff.sample_array`."""

    n: int = 1
    length: int | None = None
    seed: int = 0
    steps: int | None = None
    prefix: pd.DataFrame | np.ndarray | None = None
    sampler: str | None = None
    chunk_length: int | None = None
    overlap: int | None = None
    start: Any = None
    known: pd.DataFrame | None = None
    fill: bool = False
    """``known`` is a frame of every channel with gaps (NaN) to fill (:meth:`StageDiff.impute`), not some channels'
    values at every step."""


@dataclass(frozen=True)
class SamplingRun:
    """A request checked against a model, its defaults filled in (:meth:`StageDiff.plan_sampling`)."""

    n: int
    length: int
    seed: int
    sampler: str
    steps: int
    chunk_length: int
    overlap: int
    known: torch.Tensor | None
    """(1, p, channels) the scaled prefix the first chunk continues: its last training window at most (and a stage
    less than the chunk); None without a prefix."""
    chunks: int
    """Chunks denoised one after the other (:func:`stagediff.sampling.chunk_plan`)."""
    calendar: torch.Tensor | None = None
    """(1 or n, steps, features) the calendar features (of every sample, or of each) from the first step of ``known``
    on, as far as the last chunk reaches (:meth:`StageDiff.calendar_of`); None for a model without calendar."""
    observed: torch.Tensor | None = None
    """(1, length, channels) the scaled known values of the samples' steps, NaN where unknown (known channels, or the
    values around gaps); None where nothing is known."""
    given: np.ndarray | None = None
    """``observed`` in data units as the caller gave it (length, channels), to return exactly."""
    start: Any = None
    """The start the samples' timestamps count from: the request's, or the known values' first timestamp."""

    @property
    def evaluations(self) -> int:
        """Denoiser calls per sampling batch."""
        return self.chunks * self.steps

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """Runs with the same key can share the denoiser's batches."""
        return (
            self.length,
            self.sampler,
            self.steps,
            self.chunk_length,
            self.overlap,
            0 if self.known is None else self.known.shape[1],
            None if self.observed is None else id(self),  # known values: alone, as its noise depends on them
        )


@dataclass(frozen=True)
class SamplePiece:
    """One piece of a sampling run: ``values`` (samples, steps, channels) in data units, for samples
    ``sample ..`` and steps ``step ..`` of series ``length`` steps long."""

    sample: int
    step: int
    length: int
    values: np.ndarray


class StageDiff:
    """A Stage-Diff generator of multivariate time series.

    >>> model = StageDiff(StageDiffConfig(window=64, stage_length=16, max_steps=200)).fit("synthetic")
    >>> frame = model.sample(n=2, length=256, seed=0)
    """

    def __init__(self, config: StageDiffConfig | None = None, **overrides: Any):
        config = config or StageDiffConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.denoiser: StageDiffDenoiser | None = None
        self.scaler: MinMaxScaler | None = None
        self.metadata: dict[str, Any] = {}
        self.losses: list[float] = []

    # -- training -------------------------------------------------------------------------------
    def fit(
        self,
        data: str | os.PathLike | pd.DataFrame,
        time_column: str | None = None,
        *,
        columns: Sequence[str] | None = None,
        data_dir: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        callback: Callable[[TrainProgress], None] | None = None,
        device: str | None = "auto",
        progress: bool | None = None,
        check: bool = True,
    ) -> StageDiff:
        """Train on a DataFrame, a CSV/parquet path or a built-in dataset name (synthetic, etth1, stock, exchange).

        columns: the channel columns to model (default: every column but the time column). All validation
        happens before training starts. With ``checkpoint_dir``, an interrupted fit resumes from its last
        checkpoint there and reaches the same weights."""
        config = self.config
        series = load_series(
            data,
            time_column,
            data_dir=data_dir,
            missing=config.missing,
            max_channels=config.channels,
            min_length=config.window,
            columns=columns,
        )
        prepared = prepare(series, config.window, config.validation_fraction)
        return self.fit_prepared(
            prepared, checkpoint_dir=checkpoint_dir, callback=callback, device=device, progress=progress, check=check
        )

    def fit_prepared(
        self,
        prepared: PreparedData,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        callback: Callable[[TrainProgress], None] | None = None,
        device: str | None = "auto",
        progress: bool | None = None,
        check: bool = True,
    ) -> StageDiff:
        """Train on data already split and scaled (:func:`stagediff.data.prepare`, or the pipeline's segment
        stage through :func:`stagediff.data.load_prepared`).

        Settings the configuration leaves None are chosen from the training split first (stagediff.recipe; saved
        in ``metadata["choices"]``). With ``check``, CHECK_WINDOWS samples are then compared with the training
        windows, and where they break the channel structure or texture by a wide margin, warnings that say what to
        try are logged and saved in ``metadata["warnings"]``."""
        config = self.config
        if config.channels is None:
            config = config.replace(channels=prepared.n_channels)
        elif config.channels != prepared.n_channels:
            raise DataError(
                f"the data has {prepared.n_channels} channels but the configuration says channels: {config.channels}"
            )
        if len(prepared.train) < config.window:
            raise DataError(
                f"the training split has {len(prepared.train)} rows, shorter than one window of "
                f"{config.window}; lower validation_fraction or window"
            )
        choices = data_choices(prepared.train, config.window, config.to_dict(), prepared.description)
        config = config.replace(**{name: choice["value"] for name, choice in choices.items()})
        validation = prepared.validation if len(prepared.validation) else None
        calendar = training_calendar(config, prepared)
        trainer = Trainer(
            config,
            build_denoiser(config, prepared.n_channels),
            prepared.train,
            validation,
            device,
            calendar=calendar[0],
            validation_calendar=calendar[1] if validation is not None else None,
            missing=prepared.missing_of("train"),
            validation_missing=prepared.missing_of("validation") if validation is not None else None,
        )
        result = trainer.run(checkpoint_dir, callback=callback, progress=progress)
        config = trainer.config  # with max_minutes: the planned max_steps, so training again reaches these weights
        self.config, self.scaler = config, prepared.scaler
        # Rebuilt from the EMA state exactly as `load` does, so fit-then-sample equals save-load-sample.
        self.denoiser = restore_denoiser(config, trainer.ema.state_dict(), trainer.device)
        self.metadata = {
            **prepared.description,
            "tail": data_tail(prepared, config) if config.continuation else None,
            "choices": choices,
            "held_bounds": held_bounds(prepared.train),
            "training": {
                "steps": result.steps,
                "seconds": round(result.seconds, 3),
                "final_loss": result.losses[-1] if result.losses else None,
                "validation_losses": result.validation_losses,
                "device": str(trainer.device),
                "parameters": self.denoiser.parameter_count(),
                "budget": result.budget,
                "stopped_early": result.stopped_early,
            },
            "versions": {"stagediff": stagediff.__version__, "torch": torch.__version__},
        }
        self.losses = result.losses
        if check:
            self.metadata["warnings"] = self.check_quality(prepared.scaler.inverse_transform(prepared.train))
        return self

    def check_quality(self, series: np.ndarray, windows: int = CHECK_WINDOWS, seed: int = 0) -> list[str]:
        """Warnings, each saying what to try, where ``windows`` samples break the channel structure or the texture
        of ``series`` (rows, channels in data units; fit passes its training split) by a wide margin
        (:func:`stagediff.metrics.texture.texture_warnings`); also logged. On a time axis the samples start where
        random training windows do (at the same phases of the calendar, and not continuing the data)."""
        from stagediff.evaluation import window_starts  # (it imports this module)
        from stagediff.metrics.inputs import subsample
        from stagediff.metrics.texture import texture_warnings

        window = self.config.window
        real = subsample(sliding_windows(series, window), 4 * windows, seed)
        starts = window_starts(series_times(self.metadata, 0, len(series)), window, windows, seed + 1)
        found = texture_warnings(
            real,
            self.sample_array(len(starts) if starts is not None else windows, seed=seed, start=starts, progress=False),
            list(self.metadata["channels"]),
            self.config.channel_independent,
        )
        for warning in found:
            logger.warning(warning)
        return found

    # -- sampling -------------------------------------------------------------------------------
    def sample(
        self,
        n: int = 1,
        length: int | None = None,
        seed: int = 0,
        steps: int | None = None,
        prefix: pd.DataFrame | np.ndarray | None = None,
        *,
        sampler: str | None = None,
        start: Any = None,
        chunk_length: int | None = None,
        overlap: int | None = None,
        known: pd.DataFrame | None = None,
        fill: bool = False,
        device: str | None = None,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """``n`` synthetic series of ``length`` steps (default: the rows of ``known``, else the training window) as a
        long DataFrame with columns ``sample``, the time column and the channels, in the data's units.

        sampler: one of stagediff.config.SAMPLERS (default: the model's); steps: its network evaluations per chunk
        (default: every diffusion step for "ddpm", else config.sampling_steps;
        :func:`stagediff.diffusion.sampling_choice`).
        prefix: a real history (DataFrame with the channel columns, or an array (p, channels)) to continue;
        the samples start right after it. start: first timestamp (default: continue after the prefix, or
        after the training data, or the first timestamp of ``known``); a model with calendar features
        (config.calendar) follows its calendar from there.
        known: a DataFrame of some channels' values at every step of the samples (``length`` rows, no NaN), for
        example a scenario of a covariate; the other channels are generated to fit them (:meth:`known_values`), and
        the known ones come back exactly as given. fill: ``known`` is a frame to impute (:meth:`impute`).
        chunk_length / overlap: see :func:`stagediff.sampling.generate`."""
        run = self.plan_run(
            SampleRequest(n, length, seed, steps, prefix, sampler, chunk_length, overlap, start, known, fill), device
        )  # checked, nothing sampled yet
        times = self.sample_times(run.length, run.start, prefix)  # so is start
        return self.to_frame(assemble(self.run_pieces(run, progress)), times)

    def sample_array(
        self,
        n: int = 1,
        length: int | None = None,
        seed: int = 0,
        steps: int | None = None,
        prefix: pd.DataFrame | np.ndarray | None = None,
        *,
        sampler: str | None = None,
        start: Any = None,
        chunk_length: int | None = None,
        overlap: int | None = None,
        known: pd.DataFrame | None = None,
        device: str | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Like :meth:`sample`, as an array (n, length, channels) in data units; ``start`` may also give one
        timestamp per sample (a list of n), for instance the starts of n real windows to compare with."""
        return assemble(
            self.sample_pieces(
                n,
                length,
                seed,
                steps,
                prefix,
                sampler=sampler,
                start=start,
                chunk_length=chunk_length,
                overlap=overlap,
                known=known,
                device=device,
                progress=progress,
            )
        )

    def sample_stream(
        self,
        n: int = 1,
        length: int | None = None,
        seed: int = 0,
        steps: int | None = None,
        prefix: pd.DataFrame | np.ndarray | None = None,
        *,
        sampler: str | None = None,
        start: Any = None,
        chunk_length: int | None = None,
        overlap: int | None = None,
        known: pd.DataFrame | None = None,
        device: str | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Like :meth:`sample`, but yields the long DataFrame piece by piece as chunks are denoised (for long
        horizons: the first steps arrive before the rest is computed). All validation happens on the first
        ``next``; the pieces concatenated equal ``sample(...)`` with the same arguments up to row order (each piece
        holds the next steps of every sample of a sampling batch)."""
        run = self.plan_run(
            SampleRequest(n, length, seed, steps, prefix, sampler, chunk_length, overlap, start, known), device
        )
        time_column, index = self.sample_times(run.length, run.start, prefix)
        for piece in self.run_pieces(run, False):
            times = (time_column, index[piece.step : piece.step + piece.values.shape[1]])
            yield self.to_frame(piece.values, times, first_sample=piece.sample)

    def impute(
        self,
        frame: pd.DataFrame,
        n: int = 1,
        seed: int = 0,
        steps: int | None = None,
        *,
        sampler: str | None = None,
        chunk_length: int | None = None,
        overlap: int | None = None,
        device: str | None = None,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """``n`` draws of ``frame`` with its gaps (NaN) filled, consistent with the values on both sides of each gap,
        as a long DataFrame like :meth:`sample`'s; every value the frame has comes back unchanged.

        frame: every channel column of the model, NaN where a value is missing, the first step complete; with the
        model's time column (or a DatetimeIndex), its steps must be the model's frequency apart (a model with
        calendar follows their calendar). Without one, the frame is taken to continue right after the training data,
        as ``sample`` does. A frame that starts right after the data also continues the data's last window."""
        length = len(frame) if isinstance(frame, pd.DataFrame) else None
        return self.sample(
            n,
            length,
            seed,
            steps,
            sampler=sampler,
            chunk_length=chunk_length,
            overlap=overlap,
            known=frame,
            fill=True,
            device=device,
            progress=progress,
        )

    def sample_pieces(
        self,
        n: int = 1,
        length: int | None = None,
        seed: int = 0,
        steps: int | None = None,
        prefix: pd.DataFrame | np.ndarray | None = None,
        *,
        sampler: str | None = None,
        start: Any = None,
        chunk_length: int | None = None,
        overlap: int | None = None,
        known: pd.DataFrame | None = None,
        fill: bool = False,
        device: str | None = None,
        progress: bool | None = None,
    ) -> Iterator[SamplePiece]:
        """The engine of all sampling: validates everything at once (a :class:`DataError` names the first problem),
        then yields data-unit pieces in order (sampling batch by sampling batch, chunk by chunk) from the first
        ``next`` on."""
        run = self.plan_run(
            SampleRequest(n, length, seed, steps, prefix, sampler, chunk_length, overlap, start, known, fill), device
        )
        return self.run_pieces(run, progress)

    def plan_run(self, request: SampleRequest, device: str | None = None) -> SamplingRun:
        """:meth:`plan_sampling`, then the model moved to ``device`` (if given)."""
        run = self.plan_sampling(request)
        if device is not None:
            self.require_trained().to(resolve_device(device))
        return run

    def run_pieces(
        self, run: SamplingRun, progress: bool | None = False, step_callback: Callable[[], None] | None = None
    ) -> Iterator[SamplePiece]:
        """The pieces of a planned run (:meth:`plan_sampling`), batch by batch from one generator. ``step_callback``
        is called after every network evaluation (an exception raised there stops the sampling)."""
        denoiser = self.require_trained()
        denoiser.eval()
        generator = torch.Generator().manual_seed(run.seed)
        bar = tqdm(
            total=run.evaluations * -(-run.n // SAMPLING_BATCH),
            desc="sampling",
            unit="step",
            disable=None if progress is None else not progress,
        )

        def step() -> None:
            bar.update(1)
            if step_callback is not None:
                step_callback()

        try:
            for first in range(0, run.n, SAMPLING_BATCH):
                produced = 0
                size = min(SAMPLING_BATCH, run.n - first)
                rows = run if run.calendar is None or len(run.calendar) == 1 else rows_of(run, first, size)
                for chunk in self.denoise([rows], [size], [generator], step):
                    values = restore_given(self.scaler.inverse_transform(chunk.double().numpy()), run.given, produced)
                    yield SamplePiece(first, produced, run.length, values)
                    produced += chunk.shape[1]
        finally:
            bar.close()

    def sample_many(
        self, requests: list[SampleRequest | SamplingRun], step_callback: Callable[[], None] | None = None
    ) -> list[np.ndarray]:
        """Several requests, each with its own seed, size, length, sampler, steps and prefix, sampled together where
        they can share the denoiser's batches (:attr:`SamplingRun.batch_key`): one array (n, length, channels) in
        data units per request, each the same bytes as :meth:`sample_array` gives that request alone. Every
        request is checked before any is sampled; one already planned (a :class:`SamplingRun`) is taken as is.
        ``step_callback`` is called after every network evaluation (an exception raised there stops the sampling)."""
        runs = [r if isinstance(r, SamplingRun) else self.plan_sampling(r) for r in requests]
        groups: list[list[int]] = []  # batches of at most SAMPLING_BATCH rows, or one larger request alone
        filling: dict[Any, list[int]] = {}
        for index, run in enumerate(runs):
            members = filling.get(run.batch_key)
            if members is None or sum(runs[i].n for i in members) + run.n > SAMPLING_BATCH:
                members = filling[run.batch_key] = []
                groups.append(members)
            members.append(index)
        results: list[np.ndarray] = [np.empty(0)] * len(runs)
        for members in groups:
            if runs[members[0]].n > SAMPLING_BATCH:  # sampled in several batches from one generator, as alone
                results[members[0]] = assemble(self.run_pieces(runs[members[0]], step_callback=step_callback))
                continue
            group = [runs[i] for i in members]
            generators = [torch.Generator().manual_seed(run.seed) for run in group]
            values = torch.cat(list(self.denoise(group, [run.n for run in group], generators, step_callback)), dim=1)
            values = self.scaler.inverse_transform(values.double().numpy())
            bounds = np.cumsum([0] + [run.n for run in group])
            for i, a, b in zip(members, bounds[:-1], bounds[1:]):
                results[i] = restore_given(values[a:b], runs[i].given)
        return results

    def denoise(
        self,
        runs: list[SamplingRun],
        rows: list[int],
        generators: list[torch.Generator],
        step_callback: Callable[[], None] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Scaled chunks (sum of rows, new steps, channels) for ``rows[i]`` series of ``runs[i]`` (runs of one
        :attr:`SamplingRun.batch_key`), run i's noise drawn from ``generators[i]``."""
        first = runs[0]

        def stacked(name: str) -> torch.Tensor | None:
            if getattr(first, name) is None:
                return None
            # one row for all of a run's samples, or one per sample
            return torch.cat([getattr(run, name).expand(count, -1, -1) for run, count in zip(runs, rows)])

        yield from generate_chunks(
            self.require_trained(),
            self.make_sampler(first.sampler, first.steps),
            Noise(generators, rows),
            first.length,
            first.chunk_length,
            first.overlap,
            prefix=stacked("known"),
            calendar=stacked("calendar"),
            observed=stacked("observed"),
            step_callback=step_callback,
            guidance=self.config.guidance,
        )

    def plan_sampling(self, request: SampleRequest) -> SamplingRun:
        """``request`` checked against this model, with its defaults filled in; a :class:`DataError` names the
        first problem."""
        denoiser, config = self.require_trained(), self.config
        length = self.default_length(request.length, request.known)
        stage = denoiser.stage_length
        check_size(request.n, length, denoiser.channels)
        prefix = request.prefix
        start = self.known_start(request.known, request.start, prefix)  # known values' own timestamps set it
        if prefix is None and self.continues(start):
            prefix = np.asarray(self.metadata["tail"], dtype=np.float64)  # the data's last window
        # a prefix conditions on its last training window at most (what the model saw in training)
        history = 0 if prefix is None else min(len(prefix), config.window)
        chunk_length, overlap = request.chunk_length, request.overlap
        if chunk_length is None:  # with a prefix, at least two stages: one of history, one of new steps
            shortest = config.window if prefix is None else max(config.window, 2 * stage)
            chunk_length = max(shortest, min(CHUNK_WINDOWS * config.window, round_up(history + length, stage)))
        history = min(history, chunk_length - stage)
        if overlap is None:
            overlap = max(stage, min(round_up(config.window // 4, stage), chunk_length - stage))
        if (
            request.chunk_length is not None
            or request.overlap is not None
            or prefix is not None
            or length > chunk_length
        ):
            check_chunks(chunk_length, overlap, stage)
        check_sampler(request.sampler, request.steps, config.diffusion_steps)
        sampler, steps = sampling_choice(config, request.sampler, request.steps)
        known = None if prefix is None else self.scale_values(prefix, "prefix")
        given = None if request.known is None else self.known_values(request.known, length, request.fill)
        if known is not None:
            known = known[len(known) - history :].unsqueeze(0)
        starts = list(start) if is_sequence(start) else [start]
        if len(starts) not in (1, request.n):
            raise DataError(
                f"start gives {len(starts)} timestamps for {request.n} samples; give one, or one per sample"
            )
        calendar = None
        if config.calendar:
            history = 0 if known is None else known.shape[1]
            calendar = torch.stack(
                [
                    self.calendar_of(
                        self.sample_times(1, start, request.prefix)[1][0], history + length + chunk_length, history
                    )
                    for start in starts
                ]
            )
        return SamplingRun(
            int(request.n),
            length,
            int(request.seed),
            sampler,
            steps,
            chunk_length,
            overlap,
            known,
            chunk_plan(length, chunk_length, overlap, stage, history),
            calendar,
            None if given is None else self.scale_values(given, "frame to impute" if request.fill else "known")[None],
            given,
            start,
        )

    def default_length(self, length: int | None, known: Any = None) -> Any:
        """``length``, else the rows of ``known`` (a DataFrame), else the training window."""
        if length is not None:
            return length
        return len(known) if isinstance(known, pd.DataFrame) else self.config.window

    def continues(self, start: Any) -> bool:
        """Whether samples from ``start`` continue right after the data, so that they are conditioned on its last
        window (``metadata["tail"]``, kept unless config.continuation is False): ``start`` None on a model with a
        time column (whose samples then start after the data), or the timestamp (step number) right after the
        data's last one."""
        info = self.metadata
        if info.get("tail") is None or is_sequence(start):
            return False
        if info.get("time_column") is None or info.get("frequency") is None:
            return start is not None and self.sample_times(1, start)[1][0] == info["rows"]
        return start is None or self.sample_times(1, start)[1][0] == self.sample_times(1)[1][0]

    def make_sampler(self, sampler: str | None = None, steps: int | None = None) -> Sampler:
        """The reverse process this model samples with: the configured (or named) sampler, its x_0 estimate held
        within the training range widened by the range margin, and at the bounds the data holds."""
        chosen = make_sampler(self.config, sampler, steps)
        held = self.metadata.get("held_bounds")
        return chosen.hold(held) if held is not None else chosen

    # -- units, time and frames -------------------------------------------------------------------
    def scale_values(self, values: pd.DataFrame | np.ndarray, what: str = "prefix") -> torch.Tensor:
        """Validated values in scaled units, (p, channels): a prefix (a DataFrame with the channel columns, or an array
        (p, channels)), or known values (an array, NaN where unknown: "known", "frame to impute")."""
        channels = tuple(self.metadata["channels"])
        if isinstance(values, pd.DataFrame):
            absent = [c for c in channels if c not in values.columns]
            if absent:
                raise DataError(f"the prefix lacks the model's channel column(s) {absent}; it needs {list(channels)}")
            time_column = self.metadata.get("time_column")
            timed = time_column in values.columns
            keep = ([time_column] if timed else []) + list(channels)
            values = validate_frame(values[keep], time_column if timed else None, source="prefix").values
        elif what == "prefix":
            values = np.asarray(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values
            if values.ndim != 2 or values.shape[1] != len(channels):
                raise DataError(f"a prefix array must have shape (steps, {len(channels)}), got {values.shape}")
            if not np.isfinite(values).all():
                raise DataError("the prefix contains NaN or infinite values; fill them before sampling")
        if len(values) == 0:
            raise DataError("the prefix is empty; pass at least one step of history")
        scaled = self.scaler.transform(values)
        far = np.abs(np.nan_to_num(scaled)) > 1 + 2 * PREFIX_RANGES
        if far.any():
            row, column = (int(i) for i in np.argwhere(far)[0])
            low, high = self.scaler.inverse_transform(
                np.array([[-1.0 - 2 * PREFIX_RANGES], [1.0 + 2 * PREFIX_RANGES]]) * np.ones(len(channels))
            )[:, column]
            raise DataError(
                f"{what} record {row}: channel {channels[column]!r} is {values[row, column]:.6g}, more than "
                f"{PREFIX_RANGES} training ranges outside the model's training range "
                f"[{self.scaler.minimum[column]:.6g}, {self.scaler.maximum[column]:.6g}]; values must lie "
                f"within [{low:.6g}, {high:.6g}]: check the units and the channel order"
            )
        return torch.as_tensor(scaled, dtype=torch.float32)

    def known_values(self, known: Any, length: int, fill: bool = False) -> np.ndarray:
        """The validated known values of ``length`` steps in data units, (length, channels), NaN where unknown; a
        :class:`DataError` names the first problem.

        known: a DataFrame with some of the model's channel columns (not all), a value at every step; with ``fill``,
        a frame to impute: every channel column, NaN where missing, the first step complete. Either may also hold
        the model's time column (checked by :meth:`known_start`)."""
        channels = list(self.metadata["channels"])
        what = "the frame to impute" if fill else "known"
        if not isinstance(known, pd.DataFrame):
            needs = "every channel column" if fill else "some of the channel columns"
            raise DataError(
                f"{what} must be a DataFrame with {needs} of the model {channels}, got {type(known).__name__}"
            )
        time_column = self.metadata.get("time_column")
        others = [str(c) for c in known.columns if c not in channels and c != time_column]
        if others:
            raise DataError(
                f"{what} has column(s) {others} that are not channels of this model; its channels are {channels}"
                + (f" and its time column is {time_column!r}" if time_column else "")
            )
        present = [c for c in channels if c in known.columns]
        if fill and len(present) < len(channels):
            absent = [c for c in channels if c not in present]
            raise DataError(
                f"{what} lacks the channel column(s) {absent}; it needs all of {channels}, NaN where missing"
            )
        if not fill and not present:
            raise DataError(f"known has none of the model's channel columns {channels}; give the ones you know")
        if not fill and len(present) == len(channels):
            raise DataError(
                f"known gives every channel {channels}, so nothing is left to generate; leave out the channels to "
                "generate (to fill gaps in every channel, use impute)"
            )
        if len(known) != length:
            raise DataError(
                f"{what} has {len(known)} rows; it must have one per step of the samples ({length}, the length)"
            )
        values = np.full((length, len(channels)), np.nan)
        for column in present:
            if not pd.api.types.is_numeric_dtype(known[column]) or pd.api.types.is_bool_dtype(known[column]):
                raise DataError(f"{what}: channel {column!r} must hold numbers, got dtype {known[column].dtype}")
            values[:, channels.index(column)] = known[column].to_numpy(dtype=np.float64, na_value=np.nan)
        infinite = np.isinf(values)
        if infinite.any():
            row, column = (int(i) for i in np.argwhere(infinite)[0])
            raise DataError(f"{what} record {row}: channel {channels[column]!r} is infinite; give a finite value")
        missing = np.isnan(values[:, [channels.index(c) for c in present]])
        if not fill and missing.any():
            row, column = (int(i) for i in np.argwhere(missing)[0])
            raise DataError(
                f"known record {row}: channel {present[column]!r} is missing (NaN); a known channel needs a value at "
                "every step (to fill gaps, use impute)"
            )
        if fill and missing.all():
            raise DataError("every value of the frame to impute is missing (NaN): there is nothing to impute from")
        if fill and missing[0].any():
            raise DataError(
                f"the frame to impute misses {[c for c, m in zip(channels, missing[0]) if m]} at its first step: "
                "imputation fills gaps after known values, so start the frame at a step where every channel is known"
            )
        return values

    def known_start(self, known: Any, start: Any, prefix: Any = None) -> Any:
        """The start of samples with ``known`` values: the first timestamp of ``known``'s time column (or
        DatetimeIndex) where it has one, which must then be consecutive steps of the model's frequency from
        ``start`` if that is given, or from right after ``prefix`` if that is; else ``start``."""
        time_column = self.metadata.get("time_column")
        if not isinstance(known, pd.DataFrame) or time_column is None or not len(known) or is_sequence(start):
            return start
        since = "" if start is None else " (the start)"
        if start is None and prefix is not None:
            start, since = self.sample_times(1, None, prefix)[1][0], " (right after the prefix)"
        if time_column in known.columns:
            times = known[time_column]
        elif isinstance(known.index, pd.DatetimeIndex):
            times = known.index.to_series()
        else:
            return start
        if times.isna().any():
            raise DataError(f"known: the time column {time_column!r} has missing timestamps")
        first = times.iloc[0]
        expected = self.sample_times(len(known), first if start is None else start)[1]
        given = pd.Index(times)
        if isinstance(expected, pd.DatetimeIndex):
            try:
                given = pd.DatetimeIndex(pd.to_datetime(given))
                if given.tz is None and expected.tz is not None:
                    given = given.tz_localize(expected.tz)
                same = len(given) == len(expected) and bool((given == expected).all())
            except (TypeError, ValueError):
                same = False
        else:
            numbers = given.to_numpy(dtype=float)
            same = len(given) == len(expected) and np.allclose(numbers, expected.to_numpy(dtype=float))
        if not same:
            raise DataError(
                f"known: the time column {time_column!r} must hold the samples' timestamps, consecutive steps of "
                f"{describe_step(decode_frequency(self.metadata.get('frequency')))} from {expected[0]}"
                f"{since}; it holds {given[0]} .. {given[-1]}"
            )
        return expected[0] if start is None else start

    def sample_times(self, length: int, start: Any = None, prefix: Any = None) -> tuple[str, pd.Index]:
        """The time column name and ``length`` timestamps continuing the training frequency."""
        if is_sequence(start):
            raise DataError(
                "sample() and sample_stream() take one start for all samples; for one start per sample use "
                "sample_array(start=[...]) (its samples carry no timestamps)"
            )
        info = self.metadata
        time_column, frequency = info.get("time_column"), decode_frequency(info.get("frequency"))
        if time_column is None or frequency is None:
            first = 0 if start is None else parse_start(start, int, "an integer step number")
            return STEP_COLUMN, pd.RangeIndex(first, first + length)
        if start is None:
            last = info["last_time"]
            if isinstance(prefix, pd.DataFrame) and time_column in prefix.columns:
                last = prefix[time_column].iloc[-1]
            elif isinstance(prefix, pd.DataFrame) and isinstance(prefix.index, pd.DatetimeIndex) and len(prefix):
                last = prefix.index[-1]
            start = decode_time(last, frequency) + frequency
        if isinstance(frequency, pd.Timedelta):
            first = parse_start(start, as_timestamp, f"an ISO 8601 timestamp such as {info['last_time']!r}")
            first = local_time(first, info.get("timezone"))  # the data's zone, with its daylight-saving rules
            try:
                times = pd.date_range(first, periods=length, freq=frequency)
            except (ValueError, OverflowError) as error:
                raise DataError(
                    f"the {length} timestamps from start {first} cannot be represented ({error}); "
                    "choose an earlier start or a shorter length"
                ) from None
            if times[-1].year > 9999:
                raise DataError(
                    f"the {length} timestamps from start {first} end in {times[-1]}, after the year 9999 "
                    "that ISO 8601 timestamps can name; choose an earlier start or a shorter length"
                )
            return time_column, times
        return time_column, pd.Index(parse_start(start, float, "a number") + frequency * np.arange(length))

    def calendar_of(self, first: pd.Timestamp, rows: int, before: int = 0) -> torch.Tensor:
        """(rows, features) the calendar features of ``rows`` steps at the model's frequency, the first ``before``
        steps ahead of ``first``."""
        frequency = decode_frequency(self.metadata["frequency"])
        try:
            times = pd.date_range(first - before * frequency, periods=rows, freq=frequency)
        except (ValueError, OverflowError) as error:
            raise DataError(
                f"the timestamps around start {first} cannot be represented ({error}); choose another start"
            ) from None
        return torch.from_numpy(calendar_features(times, self.config.calendar))

    def to_frame(self, values: np.ndarray, times: tuple[str, pd.Index], first_sample: int = 0) -> pd.DataFrame:
        """(n, length, channels) -> long DataFrame: sample (numbered from ``first_sample``), time column, channels."""
        n, length, _ = values.shape
        time_column, index = times
        frame = pd.DataFrame(values.reshape(n * length, -1), columns=list(self.metadata["channels"]))
        frame.insert(0, time_column, np.tile(np.asarray(index), n))
        frame.insert(0, SAMPLE_COLUMN, np.repeat(np.arange(first_sample, first_sample + n), length))
        return frame

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        denoiser = self.require_trained()
        return save_generator(path, SavedGenerator(self.config, self.scaler, self.metadata, denoiser.state_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = "cpu") -> StageDiff:
        saved = load_generator(path)
        model = cls(saved.config)
        model.scaler, model.metadata = saved.scaler, saved.metadata
        model.denoiser = restore_denoiser(saved.config, saved.weights, resolve_device(device))
        return model

    def require_trained(self) -> StageDiffDenoiser:
        if self.denoiser is None or self.scaler is None:
            raise StageDiffError("this generator is not trained: call fit(...) or StageDiff.load(path) first")
        return self.denoiser


def is_sequence(start: Any) -> bool:
    """Whether ``start`` gives one start per sample (a list, tuple, array or index) rather than one for all."""
    return isinstance(start, (list, tuple, np.ndarray, pd.Index))


def rows_of(run: SamplingRun, first: int, size: int) -> SamplingRun:
    """``run`` for its samples ``first .. first + size`` only (their calendar rows)."""
    return dataclasses.replace(run, n=size, calendar=run.calendar[first : first + size])


def restore_given(values: np.ndarray, given: np.ndarray | None, step: int = 0) -> np.ndarray:
    """values (n, steps, channels) in data units from step ``step`` on, with the known values of ``given`` (length,
    channels; NaN where unknown) put back exactly as the caller gave them (scaling rounds them in the last digit)."""
    if given is None:
        return values
    known = given[step : step + values.shape[1]]
    return np.where(np.isnan(known), values, known)


def assemble(pieces: Iterable[SamplePiece]) -> np.ndarray:
    """The pieces of one run (:meth:`StageDiff.run_pieces`) as one array (n, length, channels)."""
    batches: list[list[np.ndarray]] = []
    for piece in pieces:
        if piece.step == 0:
            batches.append([])
        batches[-1].append(piece.values)
    return np.concatenate([np.concatenate(batch, axis=1) for batch in batches])


def restore_denoiser(
    config: StageDiffConfig, weights: dict[str, torch.Tensor], device: torch.device
) -> StageDiffDenoiser:
    """A denoiser in eval mode holding ``weights`` (the EMA weights of training), its rows independent of the batch
    (:meth:`StageDiffDenoiser.batch_invariant`)."""
    denoiser = StageDiffDenoiser(config, config.channels)
    denoiser.load_state_dict(weights)
    return denoiser.to(device).eval().batch_invariant()


def data_tail(prepared: PreparedData, config: StageDiffConfig) -> list[list[float]]:
    """The last window of the whole series (training and validation split) in data units, as the model keeps it."""
    scaled = np.concatenate([prepared.train[-config.window :], prepared.validation])[-config.window :]
    return prepared.scaler.inverse_transform(scaled).tolist()


def training_calendar(config: StageDiffConfig, prepared: PreparedData) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The calendar features of the training and validation splits (None, None without calendar); a
    :class:`DataError` where the configuration asks for a calendar that the data has no time axis for."""
    if not config.calendar:
        return None, None
    description = prepared.description
    if decode_frequency(description.get("frequency")) is None or description.get("first_time") is None:
        raise DataError(
            f"calendar {list(config.calendar)} needs a datetime time column, and this data has none; pass "
            "time_column=..., or calendar=[]"
        )
    if not isinstance(decode_frequency(description["frequency"]), pd.Timedelta):
        raise DataError(
            f"calendar {list(config.calendar)} needs a datetime time column, and this data's time column "
            f"{description['time_column']!r} holds numbers; pass calendar=[]"
        )
    train, validation = len(prepared.train), len(prepared.validation)
    return (
        calendar_features(series_times(description, 0, train), config.calendar),
        calendar_features(series_times(description, train, validation), config.calendar),
    )


def check_size(n: int, length: int, channels: int) -> None:
    """Reject absurd sampling requests before any work."""
    for name, value in (("n", n), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    if n * length * channels > MAX_SAMPLE_VALUES:
        raise DataError(
            f"n * length * channels = {n * length * channels:,} exceeds the limit of "
            f"{MAX_SAMPLE_VALUES:,} values per call; request fewer or shorter samples per call"
        )


def check_chunks(chunk_length: int, overlap: int, stage: int) -> None:
    if (
        isinstance(chunk_length, bool)
        or not isinstance(chunk_length, (int, np.integer))
        or chunk_length < 2 * stage
        or chunk_length % stage
    ):
        raise DataError(
            f"chunk_length must be a multiple of the stage length {stage} and at least two stages, got {chunk_length!r}"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or not stage <= overlap < chunk_length:
        raise DataError(
            f"overlap must be an integer in [{stage}, {chunk_length}) (stage length to chunk length), got {overlap!r}"
        )


def as_timestamp(value: Any) -> pd.Timestamp:
    """A timestamp from a datetime-like value, or from an ISO 8601 string only (pandas would also read "now")."""
    return iso_timestamp(value) if isinstance(value, str) else pd.Timestamp(value)


def parse_start(start: Any, kind: Callable[[Any], Any], expected: str) -> Any:
    """``kind(start)``, or a :class:`DataError` that says what a start of this model looks like."""
    try:
        value = kind(start)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or value is pd.NaT or isinstance(value, float) and not np.isfinite(value):
        raise DataError(f"start must be {expected} on this model's time axis, got {start!r}")
    return value


def check_sampler(sampler: str | None, steps: int | None, diffusion_steps: int) -> None:
    if sampler is not None and sampler not in SAMPLERS:
        raise DataError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= diffusion_steps
    ):
        raise DataError(
            f"steps must be an integer in [1, {diffusion_steps}] (the model's diffusion steps), got {steps!r}"
        )
