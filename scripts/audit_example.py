"""The audit of docs/audit.md ("The audit on digits, forget class 3"), end to end.

Trains the original (seed 0), five references retrained without class 3 (seeds 1, 2, 3,
5, 6) and one more retrained model to audit (seed 4), unlearns the original with TRW, RL,
GA and FT (their digits defaults, seed 0), audits every model against the five references
(all metrics, 16 shadows per side, one shared cache), and prints the table:

    python scripts/audit_example.py --out runs/audit-digits-f3
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("CLASSUNLEARN_PROGRESS", "0")

from classunlearn.cli import main as cli  # noqa: E402
from classunlearn.table import markdown_table  # noqa: E402

REFS = (1, 2, 3, 5, 6)
METHODS = ("trw", "rl", "ga", "ft")
KEYS = ("acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "svc_mia", "mia_nn",
        "mia_nn_z", "ulira", "ulira_auc", "tv", "avg_gap", "runtime_s")
HEADER = ["model", "Acc_r", "Acc_f", "TA_r", "TA_f", "SVC-MIA", "MIA-NN", "MIA-NN z", "U-LiRA",
          "U-LiRA AUC", "TV (T_f)", "Avg.Gap", "run time s"]


def run(*argv: str) -> None:
    code = cli(list(argv))
    if code != 0:
        raise SystemExit(f"classunlearn {' '.join(argv)} exited {code}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/audit-digits-f3")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def ckpt(name: str) -> str:
        return str(out / f"{name}.safetensors")

    if not Path(ckpt("original")).exists():
        run("train", "--dataset", "digits", "--seed", "0", "--out", ckpt("original"))
    for s in (*REFS, 4):
        if not Path(ckpt(f"retrain{s}")).exists():
            run("train", "--dataset", "digits", "--exclude-class", "3", "--seed", str(s),
                "--out", ckpt(f"retrain{s}"))
    for m in METHODS:
        if not Path(ckpt(m)).exists():
            run("unlearn", "--checkpoint", ckpt("original"), "--forget-class", "3",
                "--method", m, "--seed", "0", "--out", ckpt(m))
    refs = [a for s in REFS for a in ("--reference", ckpt(f"retrain{s}"))]
    rows, docs = [], {}
    for label, name in [("original", "original"), ("retrain (seed 4)", "retrain4"),
                        *[(m.upper(), m) for m in METHODS]]:
        path = out / f"{name}.audit.json"
        run("audit", "--checkpoint", ckpt(name), "--forget-class", "3", *refs,
            "--json", str(path))
        docs[name] = json.loads(path.read_text())
        rows.append([label, *(docs[name]["metrics"].get(k) for k in KEYS)])
    print(markdown_table(HEADER, rows, digits=2))
    m = docs["original"]["metrics"]
    ref_z = ", ".join(f"{r['mia_nn_z']:.2f}" for r in docs["original"]["references"])
    print(f"\nreferences' MIA-NN: {m['mia_nn_ref_mean']:.1f} ± {m['mia_nn_ref_std']:.1f}; "
          f"each reference's z against the other four: {ref_z}")


if __name__ == "__main__":
    main()
