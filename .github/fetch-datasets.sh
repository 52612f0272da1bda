#!/usr/bin/env bash
# Download the three public benchmark files the tests read (shared/datasets on the development machines) into
# the folder given as $1, and check each against the sha256 the library also checks (stagediff/data/builtin.py).
# A changed or missing file fails CI loudly, as the tests would. (Not run on the development machines, which
# have no network beyond the package index.)
set -euo pipefail
target=${1:?usage: fetch-datasets.sh FOLDER}
mkdir -p "$target"
cd "$target"
fetch() {  # name sha256 url [fallback urls...]
  local name=$1 sum=$2
  shift 2
  for url in "$@"; do
    [ -f "$name" ] || curl --fail --silent --show-error --location --retry 3 -o "$name" "$url" || rm -f "$name"
  done
  echo "$sum  $name" | sha256sum --check --strict
}
fetch ETTh1.csv f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066 \
  https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv
fetch stock_data.csv 134b8a00eb4eefa3242dd7ae85144082da80dedf75a1a656d5d08f97cd95277a \
  https://raw.githubusercontent.com/jsyoon0823/TimeGAN/master/data/stock_data.csv
fetch exchange_rate.csv d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97 \
  https://raw.githubusercontent.com/junwoopark92/Self-Supervised-Contrastive-Forecsating/main/dataset/exchange_rate/exchange_rate.csv \
  https://raw.githubusercontent.com/junwoopark92/Self-Supervised-Contrastive-Forecsating/master/dataset/exchange_rate/exchange_rate.csv
