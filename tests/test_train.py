"""Tests of stagediff.train: the step, EMA, learning-rate schedule, progress callback, validation loss,
atomic checkpoints, exact resume (interrupted + resumed == uninterrupted) and the wall-clock budget
(max_minutes: planned, reproducible, resumed without timing again, stopped when far over)."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytest
import torch

from stagediff import StageDiff
from stagediff.errors import ConfigError, DataError
from stagediff.train import (
    CHECKPOINT_NAME,
    Trainer,
    TrainProgress,
    build_denoiser,
    diffusion_loss,
    learning_rate_factor,
    planned_config,
    planned_steps,
)


def scaled_series(length: int = 150, seed: int = 0) -> np.ndarray:
    """A (length, 2) series in [-1, 1], as the trainer receives it."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    return np.clip(0.8 * np.sin(2 * np.pi * t / np.array([24, 40])) + rng.normal(0, 0.05, (length, 2)), -1, 1)


def make_trainer(config, validation: bool = True) -> Trainer:
    series = scaled_series()
    return Trainer(config, build_denoiser(config, 2), series[:100], series[100:] if validation else None, device="cpu")


def assert_same_weights(first: torch.nn.Module, second: torch.nn.Module) -> None:
    one, two = first.state_dict(), second.state_dict()
    assert one.keys() == two.keys()
    for name in one:
        assert torch.equal(one[name], two[name]), name


class Interrupt(Exception):
    pass


# ------------------------------------------------------------------------------------------------- steps


def test_diffusion_loss_is_the_mean_squared_error_with_optional_weights_per_row():
    target = torch.randn(2, 16, 3)
    prediction = target + 0.1 * torch.randn(2, 16, 3)
    assert diffusion_loss(prediction, target).item() == pytest.approx(((prediction - target) ** 2).mean().item())
    assert diffusion_loss(target, target).item() == 0.0
    first_only = torch.tensor([1.0, 0.0]).view(2, 1, 1)  # a weight per row: the second row drops out entirely
    assert diffusion_loss(prediction, target, first_only).item() == pytest.approx(
        diffusion_loss(prediction[:1], target[:1]).item() / 2, rel=1e-5
    )


def test_learning_rate_warms_up_then_decays_to_a_tenth(tiny_config):
    config = tiny_config.replace(warmup_steps=4, max_steps=20)
    factors = [learning_rate_factor(step, config) for step in range(25)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[20] == pytest.approx(0.1) and factors[24] == pytest.approx(0.1)


def test_ema_follows_the_model_with_warmed_up_decay(tiny_config):
    trainer = make_trainer(tiny_config)
    old_ema = [p.clone() for p in trainer.ema.parameters()]
    trainer.train_step()
    decay = min(tiny_config.ema_decay, 1 / 10)  # decay at step 0 is (1 + 0) / (10 + 0)
    for before, ema, model in zip(old_ema, trainer.ema.parameters(), trainer.model.parameters()):
        assert torch.allclose(ema, decay * before + (1 - decay) * model, atol=1e-6)
        assert not ema.requires_grad
    assert any(not torch.equal(e, m) for e, m in zip(trainer.ema.parameters(), trainer.model.parameters()))


def test_trainer_rejects_a_series_shorter_than_a_window(tiny_config):
    with pytest.raises(DataError, match="shorter than one window"):
        Trainer(tiny_config, build_denoiser(tiny_config, 2), scaled_series(20), device="cpu")


def test_callback_reports_every_step_and_validation_at_checkpoints(tiny_config):
    config = tiny_config.replace(max_steps=5, checkpoint_every=2)
    reports: list[TrainProgress] = []
    result = make_trainer(config).run(callback=reports.append, progress=False)
    assert [r.step for r in reports] == [1, 2, 3, 4, 5]
    assert all(r.max_steps == 5 for r in reports)
    assert [r.loss for r in reports] == result.losses
    assert all(math.isfinite(r.loss) and r.loss > 0 for r in reports)
    expected_rates = [config.learning_rate * learning_rate_factor(step, config) for step in range(1, 6)]
    assert [r.learning_rate for r in reports] == pytest.approx(expected_rates)
    assert all(b.seconds >= a.seconds >= 0 for a, b in zip(reports, reports[1:]))
    # validation at every checkpoint_every steps and at the end, and nowhere else
    assert [r.step for r in reports if r.validation_loss is not None] == [2, 4, 5]
    assert result.validation_losses == {r.step: r.validation_loss for r in reports if r.validation_loss is not None}
    assert all(math.isfinite(v) and v > 0 for v in result.validation_losses.values())
    assert result.steps == 5 and result.resumed_from == 0


def test_validation_loss_is_none_without_validation_data(tiny_config):
    reports: list[TrainProgress] = []
    result = make_trainer(tiny_config, validation=False).run(callback=reports.append, progress=False)
    assert result.validation_losses == {} and all(r.validation_loss is None for r in reports)


def test_validation_loss_is_deterministic_and_measures_the_ema(tiny_config):
    trainer = make_trainer(tiny_config)
    assert trainer.validation_loss() == trainer.validation_loss()
    before = trainer.validation_loss()
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)  # the raw model's weights do not enter the validation loss
    assert trainer.validation_loss() == before


# ----------------------------------------------------------------------------------- checkpoints and resume


def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(tiny_config, tmp_path):
    config = tiny_config.replace(max_steps=6, checkpoint_every=2)
    reference_trainer = make_trainer(config)
    reference = reference_trainer.run(progress=False)

    interrupted = make_trainer(config).run(tmp_path, stop_after=3, progress=False)
    assert interrupted.steps == 3
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["step"] == 2  # the last checkpoint

    resumed_trainer = make_trainer(config)
    resumed = resumed_trainer.run(tmp_path, progress=False)  # a fresh process would start exactly like this
    assert resumed.resumed_from == 2 and resumed.steps == 6
    assert_same_weights(resumed_trainer.model, reference_trainer.model)
    assert_same_weights(resumed_trainer.ema, reference_trainer.ema)
    assert resumed.losses == reference.losses
    assert resumed.validation_losses == reference.validation_losses


def test_checkpoint_of_a_captured_cuda_run_resumes_on_the_cpu(tiny_config, tmp_path):
    """A run whose step was captured in a CUDA graph keeps its learning rate in a tensor; an eager trainer resuming
    its checkpoint uses a float again (tests/test_cuda.py resumes a real one where a GPU is present)."""
    config = tiny_config.replace(max_steps=6, checkpoint_every=2)
    reference = make_trainer(config).run(progress=False)
    make_trainer(config).run(tmp_path, stop_after=2, progress=False)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = torch.tensor(group["lr"])
    torch.save(state, tmp_path / CHECKPOINT_NAME)
    resumed = make_trainer(config)
    result = resumed.run(tmp_path, progress=False)
    assert isinstance(resumed.optimizer.param_groups[0]["lr"], float)
    assert result.losses == reference.losses


def test_resuming_a_finished_run_trains_no_further(tiny_config, tmp_path):
    first = make_trainer(tiny_config)
    first.run(tmp_path, progress=False)
    again = make_trainer(tiny_config)
    calls = []
    result = again.run(tmp_path, callback=calls.append, progress=False)
    assert calls == [] and result.steps == tiny_config.max_steps
    assert_same_weights(again.ema, first.ema)


def test_interrupted_fit_resumes_to_the_same_weights(tiny_config, tmp_path, frame_factory):
    config = tiny_config.replace(channels=None, max_steps=6, checkpoint_every=2)
    frame = frame_factory(120)
    reference = StageDiff(config).fit(frame, "date", progress=False, device="cpu")

    def interrupt_at_step_3(report: TrainProgress) -> None:
        if report.step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        StageDiff(config).fit(
            frame, "date", checkpoint_dir=tmp_path, callback=interrupt_at_step_3, progress=False, device="cpu"
        )
    resumed = StageDiff(config).fit(frame, "date", checkpoint_dir=tmp_path, progress=False, device="cpu")
    assert_same_weights(resumed.denoiser, reference.denoiser)
    assert resumed.losses == reference.losses


def test_checkpoint_is_written_atomically(tiny_config, tmp_path, monkeypatch):
    trainer = make_trainer(tiny_config.replace(max_steps=4, checkpoint_every=2))
    trainer.run(tmp_path, stop_after=2, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary file left behind

    real_save = torch.save

    def crash_halfway(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(OSError, match="disk full"):
        trainer.run(tmp_path, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)  # the previous checkpoint is intact
    assert state["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_checkpoint_from_another_configuration_is_refused(tiny_config, tmp_path):
    make_trainer(tiny_config).run(tmp_path, progress=False)
    written = (tmp_path / CHECKPOINT_NAME).read_bytes()
    other = tiny_config.replace(d_model=8)
    with pytest.raises(ConfigError, match="different configuration"):
        make_trainer(other).run(tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == written  # left as it was


def test_a_checkpoint_from_other_data_is_refused(tiny_config, tmp_path):
    config = tiny_config.replace(max_steps=2, checkpoint_every=1)
    series = scaled_series(100)
    Trainer(config, build_denoiser(config, 2), series, device="cpu").run(tmp_path, progress=False)
    with pytest.raises(DataError, match="different data"):
        Trainer(config, build_denoiser(config, 2), series[::-1].copy(), device="cpu").run(tmp_path, progress=False)


# ------------------------------------------------------------------------------------ the wall-clock budget


def test_max_minutes_must_be_positive(tiny_config):
    for value in (0, -1.0):
        with pytest.raises(ConfigError, match="max_minutes must be positive"):
            tiny_config.replace(max_minutes=value)
    with pytest.raises(ConfigError, match="max_minutes"):
        tiny_config.replace(max_minutes="5")
    assert tiny_config.replace(max_minutes=0.5).max_minutes == 0.5


def test_a_plan_fits_warmup_and_checkpoints_and_counts_spent_time_and_validation(tiny_config):
    config = tiny_config.replace(max_minutes=2.0, max_steps=2000, warmup_steps=100, checkpoint_every=250)
    planned = planned_config(config, 1000)
    assert planned == config.replace(max_steps=1000, warmup_steps=50, max_minutes=None)  # warmup at most 5%
    assert planned_config(config, 5000).warmup_steps == 100  # never more than asked
    assert planned_config(config, 10).warmup_steps == 1 and planned_config(config, 10).checkpoint_every == 10
    # 95% of 100 s, less 5 s spent, at 0.5 s a step; a validation loss of 1 s every 10 steps and at the end
    assert planned_steps(100.0, 5.0, 0.5, 0.0, 10) == 180
    assert planned_steps(100.0, 5.0, 0.4, 1.0, 10) == 178
    assert planned_steps(100.0, 120.0, 0.5, 0.0, 10) == 1  # the budget is spent already: one step


def test_a_budget_plans_its_steps_and_its_planned_config_trains_the_same_weights(tiny_config, caplog):
    config = tiny_config.replace(max_minutes=0.03)  # 1.8 s
    trainer = make_trainer(config)
    begin = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="stagediff.train"):
        result = trainer.run(progress=False)
    elapsed = time.perf_counter() - begin
    assert elapsed < 2 * 1.8 + 5.0  # generous: the machine is shared
    budget = result.budget
    assert set(budget) == {"max_minutes", "calibration_seconds", "seconds_per_step", "planned_steps"}
    assert budget["max_minutes"] == 0.03 and budget["calibration_seconds"] > 0 and budget["seconds_per_step"] > 0
    steps = budget["planned_steps"]
    assert steps >= 2 and trainer.config == planned_config(config, steps) and trainer.config.max_minutes is None
    assert result.steps == steps or result.stopped_early
    assert f"planned {steps} steps" in caplog.text
    # the learning-rate schedule is the planned one
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(
        config.learning_rate * learning_rate_factor(result.steps, trainer.config)
    )

    again = make_trainer(trainer.config)  # from scratch, no budget: what the saved configuration does
    again_result = again.run(progress=False, stop_after=result.steps)
    assert again_result.budget is None and again_result.steps == result.steps
    assert_same_weights(again.ema, trainer.ema)
    assert_same_weights(again.model, trainer.model)
    assert again_result.losses == result.losses


def test_an_interrupted_budget_run_resumes_its_plan_without_timing_again(tiny_config, tmp_path, monkeypatch):
    config = tiny_config.replace(max_minutes=0.03)
    timings = []
    measure_pace = Trainer.measure_pace
    monkeypatch.setattr(Trainer, "measure_pace", lambda self, *args: timings.append(1) or measure_pace(self, *args))

    interrupted = make_trainer(config)
    first = interrupted.run(tmp_path, stop_after=3, progress=False)
    planned = interrupted.config
    assert len(timings) == 1 and first.steps == 3 and planned.max_steps > 3
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 2 and state["config"] == planned.to_dict() and state["budget"] == first.budget

    resumed_trainer = make_trainer(config)
    resumed = resumed_trainer.run(tmp_path, progress=False)
    assert len(timings) == 1  # the plan came from the checkpoint
    assert resumed.resumed_from == 2 and resumed_trainer.config == planned and resumed.budget == first.budget
    assert resumed.steps == planned.max_steps or resumed.stopped_early

    reference_trainer = make_trainer(planned)  # = the uninterrupted budget run with this plan
    reference = reference_trainer.run(progress=False, stop_after=resumed.steps)
    assert_same_weights(resumed_trainer.ema, reference_trainer.ema)
    assert_same_weights(resumed_trainer.model, reference_trainer.model)
    assert resumed.losses == reference.losses

    # a checkpoint of another budget or another configuration is refused, as without a budget
    for other in (config.replace(max_minutes=0.04), config.replace(d_model=8), tiny_config):
        with pytest.raises(ConfigError, match="different configuration"):
            make_trainer(other).run(tmp_path, progress=False)
    assert len(timings) == 1


def test_a_run_far_over_its_budget_stops_early(tiny_config, monkeypatch, caplog):
    """A machine that slows down after the timing: here the timing says a step takes 10 us."""
    monkeypatch.setattr(Trainer, "measure_pace", lambda self, budget_seconds: (1e-5, 0.0))
    config = tiny_config.replace(max_minutes=0.01)  # 0.6 s; a stop past 0.9 s
    trainer = make_trainer(config)
    begin = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="stagediff.train"):
        result = trainer.run(progress=False)
    assert time.perf_counter() - begin < 0.9 + 5.0
    assert result.stopped_early and 0 < result.steps == trainer.step == len(result.losses) < trainer.config.max_steps
    assert result.budget["planned_steps"] == trainer.config.max_steps > 10_000
    assert f"stopped early after {result.steps} of {trainer.config.max_steps} planned steps" in caplog.text
