"""Does the data's recording grid explain the detection AUC? (results/decisions.md, issue 31)

Samples a trained model's windows, rounds them to each channel's grid (the spacing of its lowest distinct values),
and scores both with the gradient-boosting detector (two seeds) against random real windows of the series.

    .venv/bin/python -m benchmarks.grid_probe runs/default-table/etth1-128-full-paper/model \
        ../shared/datasets/ETTh1.csv 1000 > results/default-recipe/etth1-128-grid.json

(the model: benchmarks/defaults_table.sh)"""

import argparse
import json
import time

import numpy as np
import pandas as pd

from benchmarks.windows import training_starts
from stagediff import StageDiff
from stagediff.data.windows import sliding_windows
from stagediff.metrics import detection_score
from stagediff.metrics.inputs import subsample
from stagediff.runtime import configure_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a saved model")
    parser.add_argument("data", help="the CSV of the series it was trained on")
    parser.add_argument("n", type=int, help="windows: as many real as synthetic")
    args = parser.parse_args()
    configure_threads(1)
    model_dir, data, n = args.model_dir, args.data, args.n
    frame = pd.read_csv(data).select_dtypes("number").to_numpy(dtype=np.float64)
    model = StageDiff.load(model_dir)
    real = subsample(sliding_windows(frame, model.config.window), n, 0)
    t = time.perf_counter()
    synthetic = model.sample_array(n, seed=0, start=training_starts(model, n))
    sampling = time.perf_counter() - t
    grids = []
    for c in range(frame.shape[1]):
        distinct = np.unique(np.round(frame[:, c], 9))
        grids.append(np.round(np.median(np.diff(distinct)[:50]), 9))  # the spacing of the lowest distinct values
    rounded = synthetic.copy()
    for c, g in enumerate(grids):
        offset = frame[0, c]
        rounded[..., c] = offset + g * np.round((synthetic[..., c] - offset) / g)
    result = {"grids": grids, "sampling_seconds": round(sampling, 1)}
    for name, s in (("as sampled", synthetic), ("rounded to the grid", rounded)):
        scores = [detection_score(real, s, seed=seed) for seed in (0, 1)]
        result[name] = {
            "auc": [round(x["auc"], 4) for x in scores],
            "top_features": scores[0]["top_features"][:3],
            "zero_step_share": float(np.mean(np.diff(s, axis=1) == 0)),
        }
    result["real_zero_step_share"] = float(np.mean(np.diff(real, axis=1) == 0))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
