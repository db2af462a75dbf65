#!/usr/bin/env bash
# The JAX-vs-PyTorch parity experiment, sized for 2 CPU cores (about 20-25 minutes):
#   ResNet34, --resize 64, 100 train + 100 test images per class, 8 epochs, batch 32, SGD 0.01/0.9,
#   seeds 0 1 2 for each framework; then compare.py writes docs/parity/parity.png and the table.
# The full reference setting is the same command with other flags, for a GPU:
#   FLAGS="--resize 128 --epochs 10 --train-per-class 500" docs/parity/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
FLAGS=${FLAGS:---resize 64 --epochs 8 --train-per-class 100 --test-per-class 100}
SEEDS=${SEEDS:-0 1 2}
OUT=${OUT:-runs/parity}
DATA=${DATA_DIR:+--data-dir $DATA_DIR}
mkdir -p "$OUT"
runs=()
for seed in $SEEDS; do
  for fw in jax torch; do
    script=scripts/train.py; [ $fw = torch ] && script=scripts/train_torch.py
    dir=$OUT/$fw-s$seed
    if [ ! -f "$dir/metrics.json" ] || [ "$(python3 -c "import json,sys;print(len(json.load(open('$dir/metrics.json'))))")" = 0 ]; then
      rm -rf "$dir"
      .venv/bin/python $script $FLAGS --batch-size 32 --seed $seed $DATA --workdir "$dir" > "$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
    fi
    runs+=("$dir")
  done
done
.venv/bin/python scripts/compare.py "${runs[@]}" --output docs/parity/parity.png --markdown | tee docs/parity/table.md
