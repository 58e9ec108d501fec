#!/usr/bin/env bash
# The runs behind docs/paper_claims.md: every study once under `--readings default` and once
# under `--readings paper`, in the same --out per dataset (the two sets share every trained
# original, reference, shadow and baseline; only TRW and RWFT under the paper's budget are
# extra units). results.json and results.csv of each run are copied to
# OUT/<name>-<readings>.json and .csv, which
# scripts/paper_claims.py reads. Resumable: rerun the same command and finished units are
# reused.
#   scripts/paper_claims.sh OUT [CIFAR_DIR]     (no CIFAR_DIR: digits and mnist-5k only)
set -euo pipefail
OUT=${1:?usage: scripts/paper_claims.sh OUT [CIFAR_DIR]}
CIFAR=${2:-}
CU=${CU:-classunlearn}
mkdir -p "$OUT"
stamp() { echo "$(date -u +%FT%TZ) $*" >> "$OUT/times.txt"; }

run() {  # NAME READINGS BENCH-ARGS...
  local name=$1 readings=$2
  shift 2
  stamp "$name $readings start"
  $CU bench --readings "$readings" --out "$OUT/$name" "$@" > "$OUT/$name-$readings.txt"
  cp "$OUT/$name/results.json" "$OUT/$name-$readings.json"
  cp "$OUT/$name/results.csv" "$OUT/$name-$readings.csv"
  stamp "$name $readings end"
}

# digits and mnist-5k have tuned baseline defaults (dataset_defaults): no --tune. 5
# references, the fewest for a MIA-NN "leaks" verdict. TRW-2R and the other similarity
# sources are left out: the claims are about TRW against the existing methods.
METHODS=retrain,original,ft,rl,ga,bs,be,l1-sparse,salun,scrub,ssd,unsir,rwft,trw
# ONLY=small or ONLY=cifar10 runs one part (e.g. the two in parallel)
[ "${ONLY:-}" != cifar10 ] && for readings in default paper; do
  run digits "$readings" --dataset digits --methods "$METHODS" --seeds 3 --references 5
  run mnist-5k "$readings" --dataset mnist-5k --methods "$METHODS" --seeds 2 --references 5
done
# CIFAR-10, the `cpu` preset: no tuned defaults for imagefolder, so the baselines are tuned
# (--tune baselines); TRW and RWFT keep their reading set's budget.
if [ -n "$CIFAR" ] && [ "${ONLY:-}" != small ]; then
  for readings in default paper; do
    run cifar10 "$readings" --dataset imagefolder --data-dir "$CIFAR" --preset cpu \
      --forget-class automobile cat --methods "$METHODS" --tune baselines
  done
fi
