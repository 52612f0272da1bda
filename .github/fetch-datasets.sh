#!/usr/bin/env bash
# Make sure the three public benchmark files the tests read are in the folder given as $1: each present file is
# checked against the sha256 the library also checks (stagediff/data/builtin.py), and a missing one is downloaded
# first. `make test` and CI run it; with every file present it needs no network. Offline with a file missing, it
# stops with one line that says what to do.
set -euo pipefail
target=${1:?usage: fetch-datasets.sh FOLDER}
mkdir -p "$target"
cd "$target"
fetch() {  # name sha256 url [fallback urls...]
  local name=$1 sum=$2
  shift 2
  if [ ! -f "$name" ]; then
    echo "downloading the benchmark file $name into $target" >&2
    for url in "$@"; do
      if curl --fail --silent --location --retry 2 --max-time 120 -o "$name.part" "$url" 2>/dev/null; then
        mv "$name.part" "$name"
        break
      fi
      rm -f "$name.part"
    done
  fi
  if [ ! -f "$name" ]; then
    echo "error: the benchmark file $name is not in $target and could not be downloaded (offline?): copy ETTh1.csv, stock_data.csv and exchange_rate.csv there, or set STAGEDIFF_DATA_DIR to a folder that holds them" >&2
    exit 1
  fi
  if ! echo "$sum  $name" | sha256sum --check --strict --quiet >/dev/null 2>&1; then
    echo "error: $target/$name is not the published benchmark file (its sha256 differs from $sum): delete it and run again to download it" >&2
    exit 1
  fi
}
fetch ETTh1.csv f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066 \
  https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv
fetch stock_data.csv 134b8a00eb4eefa3242dd7ae85144082da80dedf75a1a656d5d08f97cd95277a \
  https://raw.githubusercontent.com/jsyoon0823/TimeGAN/master/data/stock_data.csv
fetch exchange_rate.csv d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97 \
  https://raw.githubusercontent.com/junwoopark92/Self-Supervised-Contrastive-Forecsating/main/dataset/exchange_rate/exchange_rate.csv \
  https://raw.githubusercontent.com/junwoopark92/Self-Supervised-Contrastive-Forecsating/master/dataset/exchange_rate/exchange_rate.csv
