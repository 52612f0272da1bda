"""Tests of multi-process training (stagediff.distributed, Trainer under DDP): two CPU processes with gloo
reach the weights of one process with the same global batch, only rank 0 writes, a 2-process run resumes,
and a global batch that does not split evenly is refused before any work."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing

from stagediff import StageDiff, StageDiffConfig
from stagediff.distributed import DistributedContext, is_main_process
from stagediff.errors import ConfigError
from stagediff.generator import restore_denoiser
from stagediff.train import CHECKPOINT_NAME, Trainer, build_denoiser

WORLD_SIZE = 2
TORCHRUN_ENVIRONMENT = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Two processes sum their gradients in another order than one process: the weights agree to float rounding
# (measured: at most 1.2e-7 apart), except the attention key biases (measured: up to 7e-6). Softmax ignores
# them, so their gradient is rounding noise that Adam's normalisation turns into full-size steps.
TOLERANCE = dict(rtol=1e-5, atol=1e-6)
KEY_BIAS_TOLERANCE = dict(rtol=0.0, atol=5e-5)


def scaled_series(length: int = 150, seed: int = 0) -> np.ndarray:
    """A (length, 2) series in [-1, 1], as the trainer receives it."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    return np.clip(0.8 * np.sin(2 * np.pi * t / np.array([24, 40])) + rng.normal(0, 0.05, (length, 2)), -1, 1)


def make_trainer(config: StageDiffConfig) -> Trainer:
    series = scaled_series()
    return Trainer(config, build_denoiser(config, 2), series[:100], series[100:], device="cpu")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(worker, *args) -> None:
    """Run ``worker(rank, *args)`` in WORLD_SIZE fresh processes with torchrun's environment variables."""
    torch.multiprocessing.spawn(worker, args=(free_port(), *args), nprocs=WORLD_SIZE, join=True)


def become_rank(rank: int, port: int) -> None:
    os.environ.update(
        WORLD_SIZE=str(WORLD_SIZE),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD_SIZE),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


def record_saves(log: Path, rank: int) -> None:
    """Append this rank to ``log`` at every torch.save, to see who writes."""
    real_save = torch.save

    def save(*args, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{rank}\n")
        return real_save(*args, **kwargs)

    torch.save = save


# ---------------------------------------------------------------------------------------- process workers


def train_worker(
    rank: int, port: int, config: StageDiffConfig, checkpoint_dir: Path, out: Path, stop_after: int | None
) -> None:
    become_rank(rank, port)
    real_save = torch.save
    record_saves(out / "saves.log", rank)
    trainer = make_trainer(config)
    result = trainer.run(checkpoint_dir, progress=False, stop_after=stop_after)
    torch.save = real_save
    torch.save(
        {
            "model": trainer.model.state_dict(),
            "ema": trainer.ema.state_dict(),
            "losses": result.losses,
            "resumed_from": result.resumed_from,
            "world_size": result.world_size,
            "group_left": torch.distributed.is_initialized(),
        },
        out / f"rank{rank}.pt",
    )


def fit_worker(rank: int, port: int, config: StageDiffConfig, frame, checkpoint_dir: Path, out: Path) -> None:
    become_rank(rank, port)
    real_save = torch.save
    record_saves(out / "saves.log", rank)
    model = StageDiff(config).fit(frame, "date", checkpoint_dir=checkpoint_dir, device="cpu", progress=False)
    torch.save = real_save
    torch.save({"denoiser": model.denoiser.state_dict(), "losses": model.losses}, out / f"rank{rank}.pt")


def assert_close_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        tolerance = KEY_BIAS_TOLERANCE if name.endswith("key_value.bias") else TOLERANCE
        torch.testing.assert_close(first[name], second[name], **tolerance, msg=lambda m, name=name: f"{name}: {m}")


def assert_equal_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


# ------------------------------------------------------------------------------------------------- tests


def test_single_process_without_torchrun_environment(monkeypatch):
    for name in TORCHRUN_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    context = DistributedContext.from_environment()
    assert context == DistributedContext() and not context.enabled and context.is_main and is_main_process()
    assert context.shard(15) == slice(0, 15)  # any batch size
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not DistributedContext.from_environment().enabled


def test_each_rank_takes_its_contiguous_slice_of_the_global_batch():
    rows = [DistributedContext(world_size=4, rank=rank).shard(16) for rank in range(4)]
    assert rows == [slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 16)]


def test_a_global_batch_not_divisible_by_the_processes_is_refused_before_any_work(tiny_config, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match=r"batch_size 15 .* divisible by the number of processes, 2"):
        make_trainer(tiny_config.replace(batch_size=15))
    assert not torch.distributed.is_initialized()


def test_world_size_without_rank_names_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        DistributedContext.from_environment()


def test_two_processes_fit_the_weights_of_one_with_the_same_global_batch(tiny_config, frame_factory, tmp_path):
    """The Python API under DDP: equal weights, losses of the global batch, one writer of checkpoints."""
    config = tiny_config.replace(channels=None, max_steps=6, checkpoint_every=2)
    frame = frame_factory(120)
    reference = StageDiff(config).fit(frame, "date", progress=False, device="cpu")

    launch(fit_worker, config, frame, tmp_path / "checkpoints", tmp_path)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    assert_equal_weights(ranks[0]["denoiser"], ranks[1]["denoiser"])  # every process holds the same model
    assert_close_weights(ranks[0]["denoiser"], reference.denoiser.state_dict())
    distributed = restore_denoiser(reference.config, ranks[0]["denoiser"], torch.device("cpu"))
    x, k = torch.randn(8, 32, 2, generator=torch.Generator().manual_seed(0)), torch.arange(8)
    c = torch.rand(8, 32, distributed.calendar_inputs) * 2 - 1  # the calendar features of the hourly frame
    with torch.no_grad():  # the key biases' differences do not reach the predictions
        torch.testing.assert_close(distributed(x, k, c), reference.denoiser(x, k, c), rtol=1e-5, atol=1e-6)
    assert ranks[0]["losses"] == ranks[1]["losses"]
    assert ranks[0]["losses"] == pytest.approx(reference.losses, rel=1e-5)
    # checkpoints at steps 2, 4 and 6, each written once, by rank 0
    assert (tmp_path / "saves.log").read_text().split() == ["0", "0", "0"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [CHECKPOINT_NAME]


@pytest.mark.slow  # two launches of 2 processes: 14-34 s on a shared 2-core machine
def test_two_processes_resume_an_interrupted_run(tiny_config, tmp_path):
    """Interrupted after 3 steps (last checkpoint at step 2), resumed by 2 fresh processes (and by one): the
    weights of an uninterrupted single-process run. A single-stage model (unused fusion parameters) on purpose."""
    config = tiny_config.replace(max_steps=6, checkpoint_every=2, staged=False)
    reference = make_trainer(config)
    reference_result = reference.run(progress=False)
    checkpoints = tmp_path / "checkpoints"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()

    launch(train_worker, config, checkpoints, first, 3)
    assert torch.load(checkpoints / CHECKPOINT_NAME, weights_only=True)["step"] == 2
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(checkpoints / CHECKPOINT_NAME, alone)
    single = make_trainer(config)
    single.run(alone, progress=False)  # a checkpoint holds no per-process state: one process may resume it
    assert_close_weights(single.model.state_dict(), reference.model.state_dict())
    launch(train_worker, config, checkpoints, second, None)
    ranks = [torch.load(second / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    assert [r["resumed_from"] for r in ranks] == [2, 2] and [r["world_size"] for r in ranks] == [2, 2]
    assert not any(r["group_left"] for r in ranks)  # the trainer destroyed the process group it created
    assert_equal_weights(ranks[0]["model"], ranks[1]["model"])
    assert_close_weights(ranks[0]["model"], reference.model.state_dict())
    assert_close_weights(ranks[0]["ema"], reference.ema.state_dict())
    assert ranks[0]["losses"] == pytest.approx(reference_result.losses, rel=1e-5)
    assert (first / "saves.log").read_text().split() == ["0"]  # step 2
    assert (second / "saves.log").read_text().split() == ["0", "0"]  # steps 4 and 6


@pytest.mark.slow  # a CLI subprocess, like tests/test_cli.py: 9-13 s here
def test_torchrun_cli_fit_trains_like_one_process_and_saves_once(tiny_settings, tmp_path):
    """`torchrun --nproc-per-node 2 -m stagediff.cli fit`: the model written once equals a single-process fit."""
    config = StageDiffConfig(**tiny_settings, max_steps=4, checkpoint_every=2)
    config_file = tmp_path / "tiny.json"
    config_file.write_text(config.to_json())
    out = tmp_path / "model"
    environment = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENVIRONMENT}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(WORLD_SIZE),
            "-m",
            "stagediff.cli",
            "fit",
            "synthetic",
            "--config",
            str(config_file),
            "--out",
            str(out),
            "--checkpoint-dir",
            str(tmp_path / "model-checkpoints"),
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env={**environment, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("model saved to") == 1, completed.stdout
    assert [p.name for p in (tmp_path / "model-checkpoints").iterdir()] == [CHECKPOINT_NAME]  # one writer; kept

    reference = StageDiff(config).fit("synthetic", progress=False, device="cpu")
    assert_close_weights(StageDiff.load(out).denoiser.state_dict(), reference.denoiser.state_dict())
