"""The audit stage at real test-set sizes: MIA-NN and SVC-MIA per audited model, in one run.

    python benchmarks/audit_scale.py --data-dir CIFAR_DIR            # 1,000 / 2,000 / 10,000
    python benchmarks/audit_scale.py --data-dir DIR --quick          # tiny, for the test suite

A width-16 `cnn` is trained on a stratified subset of the training images (crop-flip, SGD,
cosine; --train, --epochs) and its logits on the train subset and the test split are the
input of every attack below, as the bench hands them over. For each test-set size (a
stratified, seeded subset of the test split) it times, per audited model:

- MIA-NN as the bench runs it (RBF SVC, 5 folds x 10 repeats = 50 fits on the forget and nn
  classes' test samples), and with 3 repeats; the spread of the score over 5 fold seeds says
  what the repeats buy;
- SVC-MIA as the bench runs it (one RBF SVC on retain-train members against test non-members,
  as many members as non-members), and with both sides capped at --cap samples (5 subsample
  seeds: the capped score's mean and sd against the full one).

The last table projects the audit stage of a study from these per-model costs: (methods x
seeds + references) models. Nothing is asserted: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from classunlearn.audit.mia_nn import mia_nn_score
from classunlearn.audit.svc_mia import svc_mia
from classunlearn.data import load_dataset, subset_dataset
from classunlearn.data.core import stratified_indices
from classunlearn.models import build_model
from classunlearn.table import markdown_table
from classunlearn.train import Recipe, predict_logits, train_model


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="imagefolder root (train/, test/)")
    ap.add_argument("--train", type=int, default=5000, help="training images (stratified)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--sizes", default="1000,2000,10000", help="test-set sizes")
    ap.add_argument("--cap", type=int, default=2000, help="SVC-MIA: samples per side, capped")
    ap.add_argument("--forget-class", type=int, default=1)
    ap.add_argument("--models", type=int, default=41,
                    help="models audited per study, for the projection (cpu preset: 18 "
                         "methods x 2 seeds + 5 references)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.train, args.epochs, sizes, args.cap = 0, 1, [50, 60], 20
    torch.manual_seed(0)
    ds = load_dataset("imagefolder", args.data_dir)
    ds = subset_dataset(ds, args.train or None, None, 0)  # 0: every training image
    sizes = [n for n in sizes if n <= len(ds.y_test)] or [len(ds.y_test)]
    recipe = Recipe(epochs=args.epochs, batch_size=128, lr=0.1, schedule="cosine",
                    augment="crop-flip")
    model = build_model("cnn", ds.input_shape, ds.num_classes, seed=0, width=16)
    model, train_s = timed(train_model, model, ds.x_train, ds.y_train, recipe, seed=0)
    train_logits = predict_logits(model, ds.x_train).numpy()
    test_logits = predict_logits(model, ds.x_test).numpy()
    y_train, y_test = ds.y_train.numpy(), ds.y_test.numpy()
    f = args.forget_class
    acc = 100 * float(np.mean(test_logits.argmax(1) == y_test))
    confusion = np.bincount(test_logits[y_test == f].argmax(1), minlength=ds.num_classes)
    confusion[f] = -1
    nn = int(confusion.argmax())  # the class this model confuses f with most
    print(f"cnn w16 on {len(y_train)} training images, {args.epochs} epochs ({train_s:.0f} s): "
          f"test accuracy {acc:.1f}%; forget class {f}, nn class {nn}\n")

    rows, per_model = [], {}
    for n in sizes:
        idx = stratified_indices(ds.y_test, n, ds.num_classes, seed=0).numpy()
        lg, y = test_logits[idx], y_test[idx]
        full, t10 = timed(mia_nn_score, lg, y, f, nn)
        _, t3 = timed(mia_nn_score, lg, y, f, nn, repeats=3)
        sd10 = statistics.stdev(mia_nn_score(lg, y, f, nn, seed=s).score for s in range(5))
        sd3 = statistics.stdev(mia_nn_score(lg, y, f, nn, repeats=3, seed=s).score
                               for s in range(5))
        retain_tr, retain_te = y_train != f, y != f
        forget_tr = y_train == f
        svc_args = (train_logits[retain_tr], y_train[retain_tr], lg[retain_te], y[retain_te],
                    train_logits[forget_tr], y_train[forget_tr])
        svc, t_svc = timed(svc_mia, *svc_args)
        capped, t_cap = [], []
        for s in range(5):
            rng = np.random.default_rng(s)
            m = rng.permutation(int(retain_tr.sum()))[:args.cap]
            nm = rng.permutation(int(retain_te.sum()))[:args.cap]
            out, t = timed(svc_mia, svc_args[0][m], svc_args[1][m], svc_args[2][nm],
                           svc_args[3][nm], *svc_args[4:], seed=s)
            capped.append(out.score)
            t_cap.append(t)
        n_svc = 2 * min(int(retain_tr.sum()), int(retain_te.sum()))
        rows.append([n, full.n_forget + full.n_nn, t10, full.score, sd10, t3, sd3, n_svc, t_svc,
                     svc.score, statistics.median(t_cap),
                     f"{statistics.mean(capped):.1f} ± {statistics.stdev(capped):.1f}"])
        per_model[n] = (t10 + t_svc, t3 + statistics.median(t_cap))
        print(f"  test {n}: MIA-NN {t10:.2f} s, SVC-MIA {t_svc:.2f} s", flush=True)
    print()
    print(markdown_table(
        ["test images", "MIA-NN samples", "MIA-NN 10 reps s", "score", "sd over fold seeds",
         "3 reps s", "sd (3 reps)", "SVC-MIA samples", "SVC-MIA s", "score",
         f"capped {args.cap} s", "capped score (5 seeds)"], rows, digits=2))
    print()
    print(markdown_table(
        ["test images", "audit s per model (as now)", f"per study ({args.models} models)",
         "with 3 reps + capped SVC-MIA", "per study"],
        [[n, a, a * args.models, b, b * args.models] for n, (a, b) in per_model.items()],
        digits=1))


if __name__ == "__main__":
    main()
