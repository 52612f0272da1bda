#!/usr/bin/env bash
# Several variants trained at once, one process each (on CUDA when present), each with a training BUDGET: a number
# of minutes (max_minutes: each trainer times its steps while the lanes share the machine and plans them), or a
# number of optimizer steps written with the suffix "steps" (e.g. 5000steps); then judged JUDGES
# more times in parallel: paper protocol, N (1,000) real vs N DDPM windows sampled on the training device, seeds
# 1..JUDGES, beside the run's own judge (seed 0). Every result is a line of runs/variants/results.jsonl; each
# lane's output is in runs/variants/LABEL.log.
#
#   benchmarks/lanes.sh BUDGET JUDGES "LABEL DATASET WINDOW [--set KEY=VALUE ...]" ...
#
# Run it from the repository root: each lane runs python -m benchmarks.variants.
# The GPU runs of results/decisions.md ("Training on a GPU: the step in a CUDA graph", 2026-12-04) used
# PYTHON=python3, the accelerator machine's own. Set STAGEDIFF_DATA_DIR to the datasets' folder.
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
n=${N:-1000}
budget=$1 judges=$2
shift 2
if [[ $budget =~ ^[0-9]+steps$ ]]; then budget_args=("${budget%steps}")
elif [[ $budget =~ ^[0-9]+(\.[0-9]+)?$ ]]; then budget_args=(--minutes "$budget")
else echo "budget $budget: write minutes (40) or steps (5000steps)" >&2; exit 2
fi
mkdir -p runs/variants

lane() {
  local label=$1 dataset=$2 window=$3
  shift 3
  local model=runs/variants/model-$label log=runs/variants/$label.log
  if [ -e "$model" ]; then echo "$model exists; choose another label" >&2; return 1; fi
  $python -m benchmarks.variants train "$dataset" "$window" "${budget_args[@]}" --label "$label" \
      --set validation_fraction=0.0 "$@" --samplers ddpm --n "$n" >"$log" 2>&1 &
  local trainer=$!
  # the model folder appears whole (saved through a staging folder): the extra judges start then, while the
  # run samples and judges its own windows
  while [ ! -d "$model" ] && kill -0 "$trainer" 2>/dev/null; do sleep 2; done
  if [ ! -d "$model" ]; then echo "lane $label failed: see $log" >&2; return 1; fi
  local seed pids=("$trainer")
  for seed in $(seq 1 "$judges"); do
    $python -m benchmarks.variants judge "$model" "$dataset" --n "$n" --repeats 1 --seed "$seed" --samplers ddpm \
        --device auto >>"$log.judges" 2>&1 &
    pids+=($!)
  done
  wait_all "lane $label: see $log and $log.judges" "${pids[@]}"
}

wait_all() {  # wait for every process; fail (with the message) if any of them failed
  local message=$1 pid failed=0
  shift
  for pid in "$@"; do wait "$pid" || failed=1; done
  if [ "$failed" = 1 ]; then echo "failed: $message" >&2; return 1; fi
}

lanes=()
for spec in "$@"; do
  # shellcheck disable=SC2086  # a spec is words: label, dataset, window, then --set options
  lane $spec &
  lanes+=($!)
done
wait_all "one or more lanes" "${lanes[@]}"
