"""Issue 25 experiment: compose unlearning methods (e.g. RWFT, then EU-1) and read U-LiRA on a
bench study's cached shadows, without registering a method.

    python experiments/cnn_forget_level/compose.py runs/eucf-cnn --model cnn \
        --steps rwft eu-k --seeds 0 1

Reads the shadow originals and retrains of a finished `bench --dataset digits --shadows 16`
study in OUT (the same keys as the bench), unlearns every shadow original with each step in
turn (each step its registry defaults, with the shadow's own half and seed, as
``bench.units.unlearn_shadows`` does), and prints U-LiRA (cross-fitted and in-sample) and
the median phi of the unlearned shadows against the shadow retrains'."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from classunlearn.audit.ulira import logit_confidence, ulira_leave_one_out
from classunlearn.bench.store import Store
from classunlearn.bench.units import StudyContext, model_from_arrays, shadow_keys
from classunlearn.data import ForgetSplit, dataset_fingerprint, load_dataset
from classunlearn.methods import UnlearnData, make_params
from classunlearn.models import canonical_model_name
from classunlearn.train import Recipe, default_recipe, predict_logits


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("out")
    a.add_argument("--dataset", default="digits")
    a.add_argument("--model", default="mlp")
    a.add_argument("--forget", type=int, default=3)
    a.add_argument("--shadows", type=int, default=16)
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a.add_argument("--steps", nargs="+", required=True)
    a.add_argument("--set", action="append", default=[], metavar="STEP:KEY=VALUE")
    args = a.parse_args()
    torch.set_num_threads(1)
    recipe = default_recipe(args.dataset)
    ds = load_dataset(args.dataset)
    ctx = StudyContext(args.dataset, None, canonical_model_name(args.model), {},
                       recipe.to_dict(), (args.forget,), dataset_fingerprint(args.dataset, None))
    split = ForgetSplit(ds, (args.forget,))
    store = Store(args.out)
    values: dict[int, dict[str, str]] = {}
    for item in args.set:
        step, kv = item.split(":", 1)
        k, v = kv.split("=", 1)
        values.setdefault(int(step), {})[k] = v
    xf, yf = split.part("train_forget")
    forget = ds.y_train == args.forget
    for s in args.seeds:
        k_orig, k_ret = shadow_keys(ctx, args.shadows, s)
        originals, retrains = store.load(k_orig), store.load(k_ret)
        if originals is None or retrains is None:
            raise SystemExit(f"seed {s}: shadows not in {args.out}; run the bench first")
        sh = originals[0]
        pool = torch.from_numpy(np.array(sh["pool"]))
        masks = torch.from_numpy(np.array(sh["mask"])).bool()
        datas, models = [], []
        for i in range(len(masks)):
            seen = pool[masks[i]]
            f_idx, r_idx = seen[forget[seen]], seen[~forget[seen]]
            datas.append(UnlearnData(ds.x_train[f_idx], ds.y_train[f_idx], ds.x_train[r_idx],
                                     ds.y_train[r_idx], (args.forget,), ds.num_classes))
            models.append(model_from_arrays(ctx, split, sh, prefix=f"m{i}."))
        seeds = [s * 1000 + i for i in range(len(masks))]
        for j, spec in enumerate(args.steps):
            cls, p = make_params(spec, args.dataset, values.get(j), recipe=Recipe.from_dict(
                ctx.recipe))
            models = [m for m, _ in cls().unlearn_many(models, datas, p, seeds)]
        phi = np.stack([logit_confidence(predict_logits(m, xf).numpy(), yf.numpy())
                        for m in models])
        in_mask = np.asarray(sh["mask"])[:, split.train_forget.numpy()].astype(bool)
        u = ulira_leave_one_out(phi, in_mask, np.asarray(retrains[0]["phi"]))
        print(f"seed {s} {'+'.join(args.steps)}: U-LiRA {u.accuracy_held_out:.1f} "
              f"(in-sample {u.accuracy_best:.1f}); median phi {np.median(phi):.2f} vs "
              f"retrains {np.median(retrains[0]['phi']):.2f}")


if __name__ == "__main__":
    main()
