#!/usr/bin/env bash
# Measured in round 3 (README, "Precision"): fp32 599 s, auto (bf16 on AVX-512 BF16) 334 s on 2 cores.
# The whole default first run (teacher included) from a fresh cache and store, at auto and at fp32.
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
for prec in auto fp32; do
  d=/tmp/defaultrun-$prec; rm -rf $d; mkdir -p $d
  start=$(date +%s.%N)
  PRUNE_CACHE_DIR=$d/cache PRUNE_STORE_DIR=$d/store nice -n 5 .venv/bin/python -m core run --dataset trec --strategy rf_fusion --layers 6 --distill --precision $prec --json > $d/run.json 2> $d/run.err
  end=$(date +%s.%N)
  echo "$prec: $(echo "$end - $start" | bc) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
