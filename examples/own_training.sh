#!/usr/bin/env bash
# The measured example of docs/own_training.md: a CNN fine-tuned from a five-class CIFAR-10
# backbone by the user's own training function (examples/my_training.py: AdamW, label
# smoothing, warm-up), then a deletion request (forget "ship"), its verification, the study,
# and the same request audited against a yardstick trained by the recipe from scratch.
#
#   examples/own_training.sh [CIFAR10_IMAGEFOLDER] [OUT]
#
# CIFAR10_IMAGEFOLDER (required) holds train/<class>/*.jpg and test/<class>/*.jpg, CIFAR-10 as
# JPEG files; OUT defaults to runs/own-training. Each step's
# output goes to OUT/logs/<step>.txt, with its wall and CPU time appended.
set -euo pipefail
SRC=${1:?usage: examples/own_training.sh CIFAR10_IMAGEFOLDER [OUT]}
R=${2:-runs/own-training}
CU=${CU:-classunlearn}
mkdir -p "$R/logs"

step() {  # step NAME COMMAND...: run it, keep its output and its time
  local name=$1; shift
  echo "\$ $*" > "$R/logs/$name.txt"
  set +e
  /usr/bin/time -f "time: %e s wall, %U s user CPU" "$@" >> "$R/logs/$name.txt" 2>&1
  echo "exit status $?" >> "$R/logs/$name.txt"
  set -e
}

# 1. data: the backbone's five classes (300 images each, not the fine-tuning ones) and the
#    ten classes of the fine-tuned model (100 train / 50 test images each), as JPEG files
D=$R/data
if [ ! -d "$D/ten" ]; then
  for c in airplane automobile bird cat deer; do
    mkdir -p "$D/five/train/$c" "$D/five/test/$c"
    ls "$SRC/train/$c" | sort | sed -n '1001,1300p' | xargs -I{} cp "$SRC/train/$c/{}" "$D/five/train/$c/"
    ls "$SRC/test/$c" | sort | head -100 | xargs -I{} cp "$SRC/test/$c/{}" "$D/five/test/$c/"
  done
  for c in $(ls "$SRC/train"); do
    mkdir -p "$D/ten/train/$c" "$D/ten/test/$c"
    ls "$SRC/train/$c" | sort | head -100 | xargs -I{} cp "$SRC/train/$c/{}" "$D/ten/train/$c/"
    ls "$SRC/test/$c" | sort | head -50 | xargs -I{} cp "$SRC/test/$c/{}" "$D/ten/test/$c/"
  done
fi
M="--model cnn --model-arg width=16"

# 2. the backbone (our recipe, 15 epochs, five classes), then the user's model: fine-tuned
#    from it on all ten classes by the user's training function
step backbone $CU train --dataset imagefolder --data-dir "$D/five" $M --epochs 15 \
    --out "$R/backbone.safetensors"
step train $CU train --dataset imagefolder --data-dir "$D/ten" $M --epochs 5 \
    --trainer examples/my_training.py:train --init "$R/backbone.safetensors" \
    --out "$R/model.safetensors"

# 3. the deletion request, trained the user's way (the sidecar says how), and its check
step forget $CU forget --checkpoint "$R/model.safetensors" --data-dir "$D/ten" \
    --forget-class ship --cache "$R/bench" --note "request 1: forget ship" --out "$R/req1"
step verify $CU verify "$R/req1/record.json"

# 4. the gold standard: retrained the user's way, audited against the same yardstick
step retrain $CU unlearn --checkpoint "$R/model.safetensors" --data-dir "$D/ten" \
    --forget-class ship --method retrain --out "$R/retrain.safetensors"
REFS=$(for j in 0 1 2 3 4; do echo --reference "$R/req1/references/reference_$j.safetensors"; done)
step audit-retrain $CU audit --checkpoint "$R/retrain.safetensors" --data-dir "$D/ten" \
    --forget-class ship $REFS --cache "$R/bench"

# 5. the wrong yardstick: the same model as classunlearn saw it before issue #27 (its
#    sidecar without trainer and init), so references and shadows train by the recipe from
#    scratch; then the same gold standard audited against those references
strip() {  # strip SRC DST: a copy of a checkpoint whose sidecar forgets trainer and init
  cp "$1.safetensors" "$2.safetensors"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [d.pop(k, None) for k in ('trainer','trainer_sha256','init','init_sha256','init_map')]; json.dump(d, open(sys.argv[2], 'w'), indent=2)" "$1.json" "$2.json"
}
strip "$R/model" "$R/model-recipe"
strip "$R/retrain" "$R/retrain-recipe"
step forget-recipe $CU forget --checkpoint "$R/model-recipe.safetensors" --data-dir "$D/ten" \
    --forget-class ship --cache "$R/cache-recipe" --out "$R/req1-recipe"
REFS=$(for j in 0 1 2 3 4; do echo --reference "$R/req1-recipe/references/reference_$j.safetensors"; done)
step audit-retrain-recipe $CU audit --checkpoint "$R/retrain-recipe.safetensors" \
    --data-dir "$D/ten" --forget-class ship $REFS --cache "$R/cache-recipe"
step compare ${PY:-python} examples/compare_records.py "$R/req1/record.json" \
    "$R/req1-recipe/record.json"
# audit refuses that yardstick for the real model (its sidecar names the trainer)
step audit-mismatch $CU audit --checkpoint "$R/req1/unlearned.safetensors" --data-dir "$D/ten" \
    --forget-class ship $REFS --shadows 0

# 5b. the trainer's file edited: forget and verify refuse (the file is restored after)
cp examples/my_training.py "$R/my_training.py.bak"
trap 'cp "$R/my_training.py.bak" examples/my_training.py' EXIT
echo "LR = 1e-3  # a later tweak" >> examples/my_training.py
step edited-forget $CU forget --checkpoint "$R/model.safetensors" --data-dir "$D/ten" \
    --forget-class ship --cache "$R/bench" --out "$R/req2"
step edited-verify $CU verify "$R/req1/record.json"
cp "$R/my_training.py.bak" examples/my_training.py

# 6. the study, trained the user's way (the request's cache is the study's --out: its
#    references, shadows and replays are reused)
step bench $CU bench --dataset imagefolder --data-dir "$D/ten" $M --epochs 5 \
    --trainer examples/my_training.py:train --init "$R/backbone.safetensors" \
    --forget-class ship --methods retrain,original,rwft,ft,trw --seeds 1 --shadows 16 \
    --references 5 --out "$R/bench"

# 7. from Python: the request again (cu.forget, every unit from the cache) and the study
#    (cu.bench) on the same images as tensors
step python ${PY:-python} examples/own_training.py "$R"
