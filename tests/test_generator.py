"""Tests of the user-facing generator (stagediff.generator, sampling, artifacts): sampling in data units
with continuing timestamps, seeds, long horizons in bounded chunks, prefix continuation, persistence and
the errors raised for bad requests and bad training data before any work starts."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from stagediff import SampleRequest, StageDiff, StageDiffConfig
from stagediff.config import SAMPLERS
from stagediff.errors import DataError, StageDiffError
from stagediff.generator import CHUNK_WINDOWS, MAX_SAMPLE_VALUES
from stagediff.sampling import chunk_plan
from stagediff.train import build_denoiser

CHANNELS = ["a", "b"]


@contextmanager
def recorded_lengths(model: StageDiff):
    """Record the sequence length of every denoiser forward call."""
    lengths: list[int] = []
    handle = model.denoiser.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    try:
        yield lengths
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------------- sampling


def test_fit_records_what_sampling_needs(trained_model, training_frame):
    meta = trained_model.metadata
    assert meta["channels"] == CHANNELS and meta["time_column"] == "date"
    assert meta["frequency"] == {"kind": "timedelta", "value": pd.Timedelta(hours=1).isoformat()}
    assert pd.Timestamp(meta["last_time"]) == training_frame["date"].iloc[-1]
    assert meta["training_rows"] == int(len(training_frame) * 0.8)
    assert trained_model.config.channels == 2  # taken from the data
    assert meta["training"]["steps"] == len(trained_model.losses) == 150
    assert sorted(meta["training"]["validation_losses"]) == [50, 100, 150]
    # the scaler is fitted on the training split only
    train = training_frame[CHANNELS].to_numpy()[: meta["training_rows"]]
    assert np.array_equal(trained_model.scaler.minimum, train.min(axis=0))
    assert np.mean(trained_model.losses[-20:]) < np.mean(trained_model.losses[:20])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_gives_finite_samples_of_the_right_shape(trained_model, sampler):
    values = trained_model.sample_array(n=3, length=32, seed=0, sampler=sampler)
    assert values.shape == (3, 32, 2) and values.dtype == np.float64
    assert np.isfinite(values).all()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_samples_and_different_seed_different(trained_model, sampler):
    first = trained_model.sample_array(n=2, length=32, seed=7, sampler=sampler)
    assert np.array_equal(first, trained_model.sample_array(n=2, length=32, seed=7, sampler=sampler))
    assert not np.allclose(first, trained_model.sample_array(n=2, length=32, seed=8, sampler=sampler))
    assert not np.allclose(first[0], first[1])  # samples in one call differ from each other


def test_steps_and_sampler_set_the_number_of_denoiser_calls(trained_model):
    for kwargs, calls in [
        ({}, 5),
        ({"steps": 3}, 3),
        ({"steps": 1}, 1),
        ({"sampler": "ddpm"}, 20),
        ({"sampler": "ddpm", "steps": 4}, 4),
    ]:
        with recorded_lengths(trained_model) as lengths:
            trained_model.sample_array(n=1, length=32, seed=0, **kwargs)
        assert len(lengths) == calls, kwargs


def test_sample_many_gives_each_request_the_bytes_it_gets_alone(trained_model, training_frame):
    prefix = training_frame[["a", "b"]].to_numpy()[-20:]
    requests = [
        SampleRequest(1, 32, seed=5),
        SampleRequest(4, 32, seed=3),
        SampleRequest(2, 32, seed=9),
        SampleRequest(3, 64, seed=1, sampler="ddpm"),
        SampleRequest(2, 64, seed=2, sampler="ddpm"),
        SampleRequest(1, 32, seed=4, sampler="ddpm", steps=4),
        SampleRequest(2, 32, seed=4, sampler="ddpm", steps=4),
        SampleRequest(1, 200, seed=6, prefix=prefix),
        SampleRequest(3, 200, seed=7, prefix=prefix[::-1].copy()),
    ]
    with recorded_lengths(trained_model) as lengths:
        together = trained_model.sample_many(requests)
    for request, values in zip(requests, together):
        alone = trained_model.sample_array(
            request.n, request.length, request.seed, request.steps, request.prefix, sampler=request.sampler
        )
        assert np.array_equal(values, alone), request
    # four batches: (32, ddim), (64, ddpm), (32, ddpm on 4 steps), and the two long continuations together
    with recorded_lengths(trained_model) as expected:
        for request in (requests[i] for i in (0, 3, 5, 7)):
            trained_model.sample_array(
                request.n, request.length, seed=0, steps=request.steps, prefix=request.prefix, sampler=request.sampler
            )
    assert len(lengths) == len(expected)


def test_sample_many_keeps_batches_within_one_sampling_batch(trained_model):
    requests = [SampleRequest(200, 32, seed=1), SampleRequest(100, 32, seed=2), SampleRequest(300, 32, seed=3)]
    with recorded_lengths(trained_model) as lengths:
        together = trained_model.sample_many(requests)
    for request, values in zip(requests, together):
        assert np.array_equal(values, trained_model.sample_array(request.n, request.length, request.seed))
    assert len(lengths) == 4 * trained_model.config.sampling_steps  # 200 | 100 | 300 in batches of 256 and 44


def test_a_saved_model_keeps_the_sampler_it_was_saved_with(trained_model, tmp_path):
    model = StageDiff(trained_model.config.replace(sampler="ddpm"))
    model.denoiser, model.scaler, model.metadata = trained_model.denoiser, trained_model.scaler, trained_model.metadata
    loaded = StageDiff.load(model.save(tmp_path / "ddpm"))
    assert StageDiffConfig().sampler == "ddim" and loaded.config.sampler == "ddpm"
    with recorded_lengths(loaded) as lengths:
        loaded.sample_array(1, 32, seed=0)
    assert len(lengths) == loaded.config.diffusion_steps


def test_sample_many_checks_every_request_before_any_work(trained_model):
    with recorded_lengths(trained_model) as lengths, pytest.raises(DataError, match="steps"):
        trained_model.sample_many([SampleRequest(2), SampleRequest(1, steps=999)])
    assert lengths == []


def test_samples_are_in_data_units_within_the_training_range(trained_model, training_frame):
    values = trained_model.sample_array(n=8, length=32, seed=0)
    low, high = training_frame[CHANNELS].min().to_numpy(), training_frame[CHANNELS].max().to_numpy()
    margin = 0.05 * (high - low)
    assert (values.min(axis=(0, 1)) >= low - margin).all() and (values.max(axis=(0, 1)) <= high + margin).all()
    assert (values.std(axis=(0, 1)) > 5).all()  # spread in data units, not squeezed into [-1, 1]
    assert (np.abs(values.mean(axis=(0, 1)) - 150) < 35).all()


def test_sample_frame_has_columns_and_continuing_timestamps(trained_model, training_frame):
    frame = trained_model.sample(n=3, length=40, seed=0)
    assert list(frame.columns) == ["sample", "date", *CHANNELS]
    assert len(frame) == 3 * 40
    assert frame["sample"].tolist() == [i for i in range(3) for _ in range(40)]
    last = training_frame["date"].iloc[-1]
    expected = pd.date_range(last + pd.Timedelta(hours=1), periods=40, freq="h")
    for _, one in frame.groupby("sample"):
        assert (pd.DatetimeIndex(one["date"]) == expected).all()
    array = trained_model.sample_array(n=3, length=40, seed=0)
    assert np.array_equal(frame[CHANNELS].to_numpy().reshape(3, 40, 2), array)


def test_start_overrides_the_first_timestamp(trained_model):
    frame = trained_model.sample(n=1, length=5, seed=0, start="2030-06-01 12:00")
    assert frame["date"].tolist() == list(pd.date_range("2030-06-01 12:00", periods=5, freq="h"))


@pytest.mark.parametrize(
    "start, words",
    [
        ("not a date", "start must be an ISO 8601 timestamp such as"),
        ("now", "start must be an ISO 8601 timestamp"),
        ("9999-12-31T23:00:00", "after the year 9999 that ISO 8601 timestamps can name"),
    ],
)
def test_a_bad_start_is_a_data_error_before_any_sampling(trained_model, start, words, monkeypatch):
    monkeypatch.setattr(trained_model, "denoise", lambda *a, **k: pytest.fail("sampled before checking start"))
    with pytest.raises(DataError, match=words):
        trained_model.sample(n=1, length=8, seed=0, start=start)


def test_a_model_without_time_column_numbers_the_steps(trained_model, training_frame):
    config = trained_model.config.replace(max_steps=5, calendar=None)
    model = StageDiff(config).fit(training_frame.drop(columns="date"), progress=False, device="cpu", check=False)
    assert model.config.calendar == ()  # no time column, no calendar
    frame = model.sample(n=2, length=4, seed=0)
    assert list(frame.columns) == ["sample", "step", *CHANNELS]
    assert frame["step"].tolist() == [0, 1, 2, 3] * 2
    assert model.sample(n=1, length=3, seed=0, start=10)["step"].tolist() == [10, 11, 12]
    with pytest.raises(DataError, match="start must be an integer step number"):
        model.sample(n=1, length=3, seed=0, start="ten")


# -------------------------------------------------------------------------------------------- long samples


@pytest.mark.parametrize("length", [320, 317])  # 10 windows, and a length that is no multiple of the stage
def test_long_samples_have_exactly_the_requested_length_and_bounded_chunks(trained_model, length):
    with recorded_lengths(trained_model) as lengths:
        values = trained_model.sample_array(n=2, length=length, seed=0)
    assert values.shape == (2, length, 2) and np.isfinite(values).all()
    window = trained_model.config.window
    chunk = CHUNK_WINDOWS * window
    assert max(lengths) <= chunk  # memory is bounded by the chunk (default: 4 windows), not by the length
    overlap = max(8, -(-window // 4 // 8) * 8)
    assert len(lengths) == chunk_plan(length, chunk, overlap, 8) * trained_model.config.sampling_steps
    with recorded_lengths(trained_model) as lengths:
        assert trained_model.sample_array(n=1, length=length, seed=0, chunk_length=window).shape == (1, length, 2)
    assert max(lengths) == window
    assert len(lengths) == chunk_plan(length, window, overlap, 8) * trained_model.config.sampling_steps
    frame = trained_model.sample(n=1, length=length, seed=0)
    assert len(frame) == length and frame["date"].is_monotonic_increasing and frame["date"].is_unique


def test_one_chunk_as_long_as_the_sample_unrolls_all_stages_in_one_pass(trained_model):
    with recorded_lengths(trained_model) as lengths:
        values = trained_model.sample_array(n=2, length=320, seed=0, chunk_length=320)
    assert values.shape == (2, 320, 2) and np.isfinite(values).all()
    assert lengths == [320] * trained_model.config.sampling_steps


def test_streamed_pieces_arrive_chunk_by_chunk_and_join_to_the_whole_sample(trained_model, training_frame):
    whole = trained_model.sample(n=2, length=320, seed=3, chunk_length=64, overlap=16)
    with recorded_lengths(trained_model) as lengths:
        stream = trained_model.sample_stream(n=2, length=320, seed=3, chunk_length=64, overlap=16)
        first = next(stream)
        calls_for_first_piece = len(lengths)
        rest = list(stream)
    assert calls_for_first_piece == trained_model.config.sampling_steps  # one chunk's work, not the whole series
    assert len(rest) >= 5
    joined = pd.concat([first, *rest]).sort_values(["sample", "date"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, whole)


def test_a_bad_streaming_request_fails_on_the_first_piece(trained_model):
    with pytest.raises(DataError, match="steps"):
        next(trained_model.sample_stream(n=1, length=64, steps=0))


# ------------------------------------------------------------------------------------------------- prefix


def test_prefix_frame_continues_its_timestamps(trained_model, training_frame):
    prefix = training_frame.iloc[100:124]
    frame = trained_model.sample(n=2, length=10, seed=0, prefix=prefix)
    expected = pd.date_range(prefix["date"].iloc[-1] + pd.Timedelta(hours=1), periods=10, freq="h")
    assert (pd.DatetimeIndex(frame["date"].iloc[:10]) == expected).all()
    # an array prefix has no timestamps: the samples continue after the training data
    array_frame = trained_model.sample(n=1, length=3, seed=0, prefix=prefix[CHANNELS].to_numpy())
    assert array_frame["date"].iloc[0] == training_frame["date"].iloc[-1] + pd.Timedelta(hours=1)
    # with the same values and the same calendar, a frame and an array prefix give the same samples
    array = prefix[CHANNELS].to_numpy()
    assert np.array_equal(
        frame[CHANNELS].to_numpy()[:10],
        trained_model.sample(n=2, length=10, seed=0, prefix=array, start=expected[0])[CHANNELS].to_numpy()[:10],
    )


def test_prefix_level_pulls_the_continuation(trained_model):
    starts = {}
    for level in (120.0, 180.0):
        values = trained_model.sample_array(n=16, length=16, seed=0, prefix=np.full((24, 2), level))
        starts[level] = values[:, :4].mean(axis=(0, 1))
    assert (starts[180.0] - starts[120.0] > 20).all(), starts
    assert (np.abs(starts[180.0] - 180) < np.abs(starts[180.0] - 120)).all(), starts
    assert (np.abs(starts[120.0] - 120) < np.abs(starts[120.0] - 180)).all(), starts


def test_prefix_changes_the_samples_and_is_deterministic(trained_model, training_frame):
    prefix = training_frame[CHANNELS].to_numpy()[:24]
    with_prefix = trained_model.sample_array(n=2, length=16, seed=0, prefix=prefix)
    assert np.array_equal(with_prefix, trained_model.sample_array(n=2, length=16, seed=0, prefix=prefix))
    assert not np.allclose(with_prefix, trained_model.sample_array(n=2, length=16, seed=0))


@pytest.mark.parametrize(
    "make_prefix, words",
    [
        (lambda f: f[["date", "a"]].iloc[:10], "lacks the model's channel"),
        (lambda f: f.iloc[:10].assign(b=np.nan), "NaN"),
        (lambda f: f.iloc[:0], "no rows"),
        (lambda f: np.ones((10, 3)), "shape"),
        (lambda f: np.ones(10), "shape"),
        (lambda f: np.ones((0, 2)), "empty"),
        (lambda f: np.array([[1.0, np.inf]]), "NaN or infinite"),
    ],
)
def test_bad_prefixes_are_data_errors(trained_model, training_frame, make_prefix, words):
    with pytest.raises(DataError, match=words):
        trained_model.sample(n=1, length=8, seed=0, prefix=make_prefix(training_frame))


# ----------------------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(n=0), "n must be a positive integer"),
        (dict(length=-1), "length must be a positive integer"),
        (dict(n="3"), "n must be a positive integer, got '3'"),
        (dict(n=True), "n must be a positive integer"),
        (dict(length=2.5), "length must be a positive integer"),
        (dict(n=10**6, length=10**6), "exceeds the limit"),
        (dict(chunk_length=30), "multiple of the stage length"),
        (dict(chunk_length=32, overlap=32), "overlap"),
        (dict(overlap=4), "overlap"),
    ],
)
def test_bad_sampling_requests_are_refused_before_work(trained_model, kwargs, words):
    with recorded_lengths(trained_model) as lengths, pytest.raises(DataError, match=words):
        trained_model.sample(**{"n": 1, "length": 32, **kwargs})
    assert lengths == []
    assert MAX_SAMPLE_VALUES < 10**12


def test_an_untrained_generator_cannot_sample_or_save(tmp_path, tiny_settings):
    model = StageDiff(StageDiffConfig(**tiny_settings))
    for action in (lambda: model.sample(n=1), lambda: model.sample_array(n=1), lambda: model.save(tmp_path / "m")):
        with pytest.raises(StageDiffError, match="not trained"):
            action()
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------------- persistence


def test_save_load_round_trip_gives_identical_samples(trained_model, tmp_path):
    path = trained_model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metadata.json", "scaler.json", "weights.pt"]
    loaded = StageDiff.load(path)
    assert loaded.config == trained_model.config and loaded.scaler == trained_model.scaler
    assert (
        loaded.metadata["channels"] == CHANNELS and loaded.metadata["last_time"] == trained_model.metadata["last_time"]
    )
    for sampler in ("ddim", "ddpm"):
        assert np.array_equal(
            loaded.sample_array(n=2, length=48, seed=3, sampler=sampler),
            trained_model.sample_array(n=2, length=48, seed=3, sampler=sampler),
        )
    pd.testing.assert_frame_equal(loaded.sample(n=1, length=8, seed=1), trained_model.sample(n=1, length=8, seed=1))


def test_loading_something_that_is_not_a_model_is_an_error(trained_model, tmp_path):
    with pytest.raises(StageDiffError, match="no model folder"):
        StageDiff.load(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageDiffError, match="missing config.json"):
        StageDiff.load(tmp_path / "empty")
    partial = trained_model.save(tmp_path / "partial")
    (partial / "weights.pt").unlink()
    with pytest.raises(StageDiffError, match="missing weights.pt"):
        StageDiff.load(partial)


def test_save_refuses_to_overwrite_something_that_is_not_a_model(trained_model, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    with pytest.raises(StageDiffError, match="refusing to overwrite"):
        trained_model.save(folder)
    assert [p.name for p in folder.iterdir()] == ["thesis.txt"] and (folder / "thesis.txt").read_text() == "precious"
    file = tmp_path / "model.txt"
    file.write_text("x")
    with pytest.raises(StageDiffError, match="refusing to overwrite"):
        trained_model.save(file)
    assert file.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt", "notes"]  # no staging folders left
    (tmp_path / "empty").mkdir()
    assert StageDiff.load(trained_model.save(tmp_path / "empty")).config == trained_model.config


def test_saving_over_a_model_replaces_it_atomically(trained_model, tmp_path, monkeypatch):
    target = trained_model.save(tmp_path / "model")
    other = StageDiff.load(target)
    with torch.no_grad():
        other.denoiser.initial_history.add_(1.0)
    other.save(target)
    assert torch.equal(StageDiff.load(target).denoiser.initial_history, other.denoiser.initial_history)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or backup folders left

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        trained_model.save(target)
    monkeypatch.undo()
    # the interrupted save left the previous model whole
    assert torch.equal(StageDiff.load(target).denoiser.initial_history, other.denoiser.initial_history)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# ------------------------------------------------------------------------------------------ bad fit input


def bad_frame(case: str, good: pd.DataFrame) -> tuple[pd.DataFrame, dict, str]:
    """(frame, config changes, words the error must contain) for one kind of bad training data."""
    if case == "text column":
        return good.assign(label="x"), {}, "non-numeric"
    if case == "NaN":
        return good.assign(a=good["a"].where(good.index != 7)), {}, "NaN"
    if case == "duplicate timestamps":
        duplicated = good.copy()
        duplicated.loc[5, "date"] = duplicated.loc[4, "date"]
        return duplicated, {}, "duplicated timestamp"
    if case == "too short":
        return good.iloc[:20], {}, "shorter than one window"
    if case == "training split too short":
        return good.iloc[:40], {"validation_fraction": 0.5}, "training split"
    assert case == "more channels than configured"
    return good, {"channels": 1}, "configured for 1"


@pytest.mark.parametrize(
    "case",
    [
        "text column",
        "NaN",
        "duplicate timestamps",
        "too short",
        "training split too short",
        "more channels than configured",
    ],
)
def test_bad_training_data_fails_before_training_starts(tmp_path, tiny_settings, frame_factory, case):
    frame, changes, words = bad_frame(case, frame_factory(120))
    config = StageDiffConfig(**tiny_settings, max_steps=10_000, checkpoint_every=1).replace(**changes)
    calls: list = []
    started = time.perf_counter()
    with pytest.raises(DataError, match=words):
        StageDiff(config).fit(
            frame, "date", checkpoint_dir=tmp_path / "checkpoints", callback=calls.append, progress=False, device="cpu"
        )
    assert time.perf_counter() - started < 5  # 10,000 steps would take minutes
    assert calls == []
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("steps", [0, -3, 10_000, 2.5, "5"])
def test_bad_step_counts_are_named(trained_model, steps):
    with pytest.raises(DataError, match="steps must be"):
        trained_model.sample(n=1, steps=steps)


def test_unknown_sampler_is_named(trained_model):
    with pytest.raises(DataError, match="sampler must be"):
        trained_model.sample(n=1, sampler="euler")


def test_a_single_stage_model_samples_one_window_and_longer(tiny_settings, training_frame):
    # "w/o Stage": the stage is the whole window, so a one-window sample is a single chunk with no overlap
    model = StageDiff(StageDiffConfig(**{**tiny_settings, "staged": False}, max_steps=2)).fit(
        training_frame, "date", progress=False
    )
    window = model.config.window
    assert model.sample_array(n=2, seed=0).shape == (2, window, 2)
    assert model.sample_array(n=1, length=3 * window + 5, seed=0).shape == (1, 3 * window + 5, 2)


@pytest.mark.parametrize("threads", [1, 2, 8])
@pytest.mark.parametrize("stages", [1, 3])
def test_the_denoisers_rows_do_not_depend_on_how_many_share_a_call(stages, threads):
    # the default patching of a window-64 model: 3 patches per stage, so its projections see 3, 6, 9 .. rows; at 2 or
    # 8 threads a CPU matrix product of 5-7 or 9-11 rows took other kernels than a larger one (measured here)
    config = StageDiffConfig(window=64, channel_independent=False, calendar=[])
    torch.manual_seed(0)
    denoiser = build_denoiser(config, 5).eval().batch_invariant()
    x = torch.randn(16, stages * denoiser.stage_length, 5)
    k = torch.full((16,), 50)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            reference = denoiser(x, k)
            for rows in range(1, 13):
                for first in (0, 3):
                    part = slice(first, first + rows)
                    assert torch.equal(denoiser(x[part], k[part]), reference[part]), (first, rows)
    finally:
        torch.set_num_threads(before)


def test_only_the_layers_that_can_see_few_rows_are_padded():
    denoiser = build_denoiser(StageDiffConfig(window=256, channel_independent=True), 7).eval().batch_invariant()
    layers = {name: layer for name, layer in denoiser.named_modules() if isinstance(layer, (nn.Linear, nn.Conv1d))}
    padded = {name for name, layer in layers.items() if "forward" in vars(layer)}
    # the step embedding sees one row per series; an attention projection sees every patch of every channel
    assert {"step_embedding.mlp.0", "step_embedding.mlp.2"} <= padded
    assert 0 < len(padded) < len(layers) // 4
