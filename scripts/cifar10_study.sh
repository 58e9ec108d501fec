#!/usr/bin/env bash
# The CIFAR-10 study of docs/cifar10.md: the `cpu` preset, forget automobile and cat, every
# method; then TRW's beta (1 and 3; 0 is RWFT, 10 the default) and the fourth similarity
# source (logits) on the same cached originals, references and shadows; then the main study
# once more (every unit reused) so that results.json and report.html are its own.
# Resumable: rerun the same command and finished units are reused.
#   scripts/cifar10_study.sh CIFAR_DIR OUT      (times.txt: when each step ended)
set -euo pipefail
DATA=${1:?usage: scripts/cifar10_study.sh CIFAR_DIR OUT}
OUT=${2:?usage: scripts/cifar10_study.sh CIFAR_DIR OUT}
CU=${CU:-classunlearn}
COMMON=(bench --dataset imagefolder --data-dir "$DATA" --preset cpu
        --forget-class automobile cat --out "$OUT")
mkdir -p "$OUT/ablation"
stamp() { echo "$(date -u +%FT%TZ) $*" >> "$OUT/times.txt"; }
# one class at a time first, so times.txt holds the wall time of a one-class study (its
# originals included: the second class reuses them, so its time is the smaller)
for cls in automobile cat; do
  stamp "$cls start"
  $CU bench --dataset imagefolder --data-dir "$DATA" --preset cpu --forget-class "$cls" \
      --out "$OUT" > "$OUT/table-$cls.txt"
  stamp "$cls end"
done
for beta in 1 3; do
  [ -f "$OUT/ablation/beta$beta.json" ] && continue
  $CU "${COMMON[@]}" --methods retrain,trw --set "trw:beta=$beta" > "$OUT/ablation/beta$beta.txt"
  cp "$OUT/results.json" "$OUT/ablation/beta$beta.json"
  stamp "beta $beta end"
done
if [ ! -f "$OUT/ablation/logits.json" ]; then
  $CU "${COMMON[@]}" --methods "retrain,trw[logits]" > "$OUT/ablation/logits.txt"
  cp "$OUT/results.json" "$OUT/ablation/logits.json"
  stamp "logits end"
fi
$CU "${COMMON[@]}" > "$OUT/table.txt"
stamp "final end"
