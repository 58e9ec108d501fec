"""One unlearned model under several yardsticks: a row per forget record (docs/own_training.md).

    python examples/compare_records.py RECORD.json [RECORD.json ...]

Each row: the record's folder, the unlearned model's metrics with the references' mean in
parentheses, and the verdicts.
"""

import json
import sys
from pathlib import Path

KEYS = [("Acc_r", "acc_retain", 1), ("TA_r", "test_acc_retain", 1), ("MIA-NN", "mia_nn", 1),
        ("MIA-NN z", "mia_nn_z", 2), ("TV", "tv", 2), ("U-LiRA", "ulira", 1),
        ("U-LiRA in-sample", "ulira_in_sample", 1), ("Avg.Gap", "avg_gap", 1)]


def main() -> None:
    print("| record | " + " | ".join(h for h, _, _ in KEYS) + " | U-LiRA null | verdicts |")
    print("|---" * (len(KEYS) + 3) + "|")
    for path in sys.argv[1:]:
        r = json.loads(Path(path).read_text())
        cells = []
        for _, key, digits in KEYS:
            m = r["metrics"][key]
            ref = m["references_mean"]
            cells.append(f"{m['value']:.{digits}f}" + ("" if ref is None or key == "mia_nn_z"
                                                       else f" ({ref:.{digits}f})"))
        null = r["audit"]["ulira"].get("ulira_null") or {}
        verdicts = ", ".join(f"{v['attack']}: {v['outcome']}" for v in r["verdicts"])
        print(f"| {Path(path).parent.name} | " + " | ".join(cells)
              + f" | {null.get('point', float('nan')):.1f} | {verdicts} |")


if __name__ == "__main__":
    main()
