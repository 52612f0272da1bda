#!/usr/bin/env bash
# The defaults table of docs/benchmarks.md (issue 31): the default recipe, no per-dataset setting, on ETTh1, stock
# and exchange at windows 128 and 256 under the paper protocol, with a training budget of M minutes per model
# (default 8); then the default recipe on data no choice was tuned on (benchmarks/default_recipe.py). Two lanes,
# one torch thread each (a 2-core CPU): lane 1 the 128 cells then the unseen data, lane 2 the 256 cells.
# Results: results/default-recipe/; the table: benchmarks/paper_table.py --table ... --quality.
#
#   STAGEDIFF_DATA_DIR=../shared/datasets benchmarks/defaults_table.sh [M]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
python=${PYTHON:-.venv/bin/python}
M=${1:-8}
out=results/default-recipe
common=(--recipe default --minutes "$M" --protocols paper --repeats 2 --threads 1 --work runs/default-table
        --metrics discriminative predictive detection detection_cnn texture copy)
mkdir -p "$out" runs
(
  $python -m benchmarks.paper_table "${common[@]}" --windows 128 --out "$out/paper-128-${M}min.json" \
      > runs/default-table-128.log 2>&1
  $python -m benchmarks.default_recipe --minutes 4 --windows 128 --n 500 --repeats 2 --threads 1 \
      --out "$out/unseen-128-4min.json" > runs/default-unseen.log 2>&1
) &
lane=$!
$python -m benchmarks.paper_table "${common[@]}" --windows 256 --out "$out/paper-256-${M}min.json" \
    > runs/default-table-256.log 2>&1
wait "$lane"
$python -m benchmarks.paper_table --table "$out"/paper-*-"${M}"min.json --quality
