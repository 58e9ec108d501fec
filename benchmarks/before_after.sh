#!/bin/bash
# Time one bench study at two commits, alternating (A B A B ...), each from its own git
# worktree into a fresh --out: this machine's speed drifts, so only runs of one sequence
# compare. Prints one line per run (wall seconds, load average) into OUT/times.txt.
#
#   benchmarks/before_after.sh BEFORE_COMMIT AFTER_COMMIT OUT ROUNDS -- BENCH ARGS...
#   benchmarks/before_after.sh b702384 HEAD runs/m5k/cmp 2 -- --dataset mnist-5k --seeds 2
set -euo pipefail
before=$1 after=$2 out=$(realpath -m "$3") rounds=$4
shift 4; [ "${1:-}" = "--" ] && shift
repo=$(git rev-parse --show-toplevel)
py=${PYTHON:-$repo/.venv/bin/python}
mkdir -p "$out"
for tag in before after; do
  commit=$([ $tag = before ] && echo "$before" || echo "$after")
  rm -rf "/tmp/ba-wt-$tag"; git -C "$repo" worktree add --detach "/tmp/ba-wt-$tag" "$commit" >/dev/null
done
trap 'git -C "$repo" worktree remove --force /tmp/ba-wt-before; git -C "$repo" worktree remove --force /tmp/ba-wt-after' EXIT
for i in $(seq 1 "$rounds"); do
  for tag in after before; do
    start=$(date +%s.%N)
    (cd /tmp && env PYTHONPATH="/tmp/ba-wt-$tag/src" "$py" -m classunlearn bench "$@" \
       --out "$out/$tag$i") > "$out/$tag$i.log" 2>&1
    echo "$tag$i wall $(echo "$(date +%s.%N) - $start" | bc) load $(cut -d' ' -f1-3 /proc/loadavg)" \
      | tee -a "$out/times.txt"
  done
done
