"""Autocorrelation per lag of real and synthetic windows, per channel: how long a model keeps a window's daily
cycle and level. Prints, for each channel (rows) and lag (columns), the mean over 200 windows of each window's
autocorrelation, then each channel's mean within-window standard deviation and the spread of window means.

    STAGEDIFF_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/autocorrelation_lags.py \\
        runs/variants/model-etth1-256-s5000-skip etth1      # 200 real and 200 DDPM windows, minutes
"""

import sys

import numpy as np
import torch

from stagediff import StageDiff
from stagediff.evaluation import protocol_windows

LAGS = [1, 2, 6, 12, 24, 48, 72, 96, 120]


def autocorrelation(windows: np.ndarray, lags: list[int]) -> np.ndarray:
    """(lags, channels): the mean over windows of each window's autocorrelation at each lag."""
    centred = windows - windows.mean(1, keepdims=True)
    variance = (centred**2).mean(1)
    return np.stack([(centred[:, :-lag] * centred[:, lag:]).mean(1) / variance for lag in lags], 0).mean(1)


if __name__ == "__main__":
    torch.set_num_threads(1)
    model = StageDiff.load(sys.argv[1])
    real = protocol_windows(model, sys.argv[2], "paper", 200, 0)[0]
    synthetic = model.sample_array(200, seed=0, sampler="ddpm", progress=False)
    np.set_printoptions(precision=2, suppress=True, linewidth=200)
    print("lags", LAGS)
    print("real\n", autocorrelation(real, LAGS).T)
    print("syn\n", autocorrelation(synthetic, LAGS).T)
    print("window std real", real.std(1).mean(0))
    print("window std syn", synthetic.std(1).mean(0))
    print("window mean spread real", real.mean(1).std(0))
    print("syn", synthetic.mean(1).std(0))
