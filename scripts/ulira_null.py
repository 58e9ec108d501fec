"""What U-LiRA reads when nothing is to be found: two independent sets of retrained models.

Trains, for each seed, two sets of N shadow retrains (models trained by the one training
procedure on complementary-pair halves of D_r, exactly as the bench trains its shadow
retrains) and runs the leave-one-out attack with one set posing as "unlearned" (with a
complementary-pair mask over D_f). Every difference it finds is the attack's own noise.

    python scripts/ulira_null.py --dataset digits --forget-class 3 --shadows 8 --seeds 6
"""

from __future__ import annotations

import argparse

import torch

from classunlearn.audit.ulira import ulira_leave_one_out
from classunlearn.bench.units import StudyContext, unit_shadows
from classunlearn.data import DATASETS, dataset_fingerprint
from classunlearn.shadows import balanced_halves
from classunlearn.train import default_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--forget-class", type=int, default=3)
    ap.add_argument("--shadows", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ctx = StudyContext(args.dataset, None, DATASETS[args.dataset].default_model, {},
                       default_recipe(args.dataset).to_dict(), (args.forget_class,),
                       dataset_fingerprint(args.dataset))
    n = args.shadows
    for s in range(args.seeds):
        a, _ = unit_shadows(ctx, 7000 + s, n, True)
        b, _ = unit_shadows(ctx, 8000 + s, n, True)
        mask = balanced_halves(a["phi"].shape[1], n, 9000 + s).numpy()
        u = ulira_leave_one_out(a["phi"], mask, b["phi"])
        print(f"N={n} seed {s}: ulira {u.accuracy_best:.1f} at0 {u.accuracy_at_zero:.1f} "
              f"auc {u.auc:.1f} raw {u.auc_raw:.1f} held-out {u.accuracy_held_out:.1f} "
              f"(folds {u.folds})", flush=True)


if __name__ == "__main__":
    main()
