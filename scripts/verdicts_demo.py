"""Verdicts (classunlearn.audit.verdicts) of every method of a finished bench run.

    classunlearn bench --dataset digits --methods retrain,original,rl,rwft --seeds 1 \
        --shadows 8 --references 5 --epochs 10 --executor local --out /tmp/verd-run
    python scripts/verdicts_demo.py /tmp/verd-run --dataset digits --forget 3

Reads results.json (Acc_f, TA_r, MIA-NN z of each method) and the run's artifacts (the
references' logits, the shadow sets and every method's replay on them), and prints the
three verdicts of each method at seed 0. The U-LiRA null is the `retrain` replay's
interval on the same shadows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from classunlearn.audit.verdicts import (
    accuracy_verdict,
    mia_nn_verdict,
    ulira_null,
    ulira_phi_interval,
    ulira_verdict,
)
from classunlearn.data import ForgetSplit, load_dataset


def artifacts(out: Path) -> dict[str, dict]:
    """label -> arrays of every artifact of the run."""
    found = {}
    for meta in (out / "artifacts").glob("*.json"):
        label = json.loads(meta.read_text()).get("label")
        tensors = meta.with_suffix(".safetensors")
        if label and tensors.is_file():
            found[label] = load_file(tensors)
    return found


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.argmax(1) == labels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--forget", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()

    split = ForgetSplit(load_dataset(args.dataset), (args.forget,))
    arts = artifacts(args.out)
    results = json.loads((args.out / "results.json").read_text())
    (study, rows), = results["studies"].items()
    y_tr, y_te = split.dataset.y_train.numpy(), split.dataset.y_test.numpy()
    f_tr, r_te = split.train_forget.numpy(), split.test_retain.numpy()
    refs = [a for k, a in sorted(arts.items()) if k.startswith("reference ")]
    ref_acc_f = [accuracy(r["logits_train"][f_tr], y_tr[f_tr]) for r in refs]
    ref_ta_r = [accuracy(r["logits_test"][r_te], y_te[r_te]) for r in refs]
    s = args.seed
    shadows_o = next(a for k, a in arts.items() if k.endswith(f"shadow originals seed {s}"))
    shadows_r = next(a for k, a in arts.items() if k.endswith(f"shadow retrains seed {s}"))
    mask = shadows_o["mask"][:, f_tr].astype(bool)
    null = ulira_null(arts[f"retrain on {len(mask)} shadows seed {s}"]["phi"], mask,
                      shadows_r["phi"], n_boot=args.n_boot)
    print(f"{study}: {len(refs)} references (Acc_f {', '.join(f'{v:.1f}' for v in ref_acc_f)}; "
          f"TA_r {', '.join(f'{v:.1f}' for v in ref_ta_r)}), {len(mask)} shadows per side")
    print(f"U-LiRA null (retrain replayed): {null.point:.1f} [{null.low:.1f}, {null.high:.1f}]")
    for method, m in rows.items():
        value = {k: v["mean"] for k, v in m.items()}  # one seed: the mean is the value
        get = value.__getitem__
        acc = accuracy_verdict(get("acc_forget"), get("test_acc_retain"), ref_acc_f, ref_ta_r)
        mia = mia_nn_verdict(get("mia_nn_z"), len(refs))
        interval = ulira_phi_interval(arts[f"{method} on {len(mask)} shadows seed {s}"]["phi"],
                                      mask, shadows_r["phi"], n_boot=args.n_boot)
        ul = ulira_verdict(interval, null)
        print(f"{method:9s} accuracy: {acc.outcome} (Acc_f {get('acc_forget'):.1f}, TA_r "
              f"{get('test_acc_retain'):.1f}) | MIA-NN: {mia.outcome} (z {get('mia_nn_z'):.2f}) "
              f"| U-LiRA: {ul.outcome} ({interval.point:.1f} [{interval.low:.1f}, "
              f"{interval.high:.1f}])")


if __name__ == "__main__":
    main()
