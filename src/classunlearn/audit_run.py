"""`classunlearn audit`: load a checkpoint and its references, compute logits once, and
evaluate every requested metric group."""

from __future__ import annotations

import argparse

from classunlearn.checkpoint import load_checkpoint, load_meta
from classunlearn.data import ForgetSplit, load_dataset
from classunlearn.errors import CheckpointError, ParameterError
from classunlearn.evaluate import SplitLogits, basic_metrics
from classunlearn.table import markdown_table

METRIC_GROUPS = ("accuracy", "tv")


def parse_metric_groups(text: str) -> list[str]:
    if text.strip() == "all":
        return list(METRIC_GROUPS)
    groups = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in groups if g not in METRIC_GROUPS]
    if bad or not groups:
        raise ParameterError(f"unknown metric group(s) {bad or text!r}; choose from "
                             f"{', '.join(METRIC_GROUPS)} or 'all'")
    return groups


def audit_checkpoint(args: argparse.Namespace) -> dict:
    groups = parse_metric_groups(args.metrics)
    meta = load_meta(args.checkpoint)
    ds = load_dataset(meta.dataset, args.data_dir)
    split = ForgetSplit.make(ds, args.forget_class)
    model, meta = load_checkpoint(args.checkpoint, ds)
    refs = []
    for path in args.reference:
        ref, ref_meta = load_checkpoint(path, ds)
        if sorted(ref_meta.excluded_classes) != list(split.forget_classes):
            raise CheckpointError(
                f"reference {path} was trained without classes {ref_meta.excluded_classes}, "
                f"not the forget classes {list(split.forget_classes)}; train it with "
                "`classunlearn train --exclude-class ...`")
        refs.append(SplitLogits.of(ref, split))
    logits = SplitLogits.of(model, split)
    metrics = basic_metrics(logits, split, refs if "tv" in groups else None)
    ref_metrics = [basic_metrics(r, split) for r in refs]
    print(_table(metrics, ref_metrics, split))
    return {"checkpoint": str(args.checkpoint), "forget_classes": list(split.forget_classes),
            "method": (meta.method or {}).get("name", "retrain" if meta.excluded_classes
                                               else "original"),
            "metrics": metrics, "references": ref_metrics}


def _table(metrics: dict, refs: list[dict], split: ForgetSplit) -> str:
    keys = ["acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "tv"]
    header = ["model", "Acc_r", "Acc_f", "TA_r", "TA_f", "TV(T_f)"]
    rows = [["audited", *(metrics.get(k) for k in keys)]]
    rows += [[f"reference {i}", *(r.get(k) for k in keys)] for i, r in enumerate(refs)]
    names = split.dataset.class_names
    per_class = ", ".join(f"{names[c]}:{a:.0f}" for c, a in
                          enumerate(metrics["per_class_test_acc"]))
    return markdown_table(header, rows, digits=2) + f"\nper-class test accuracy: {per_class}"
