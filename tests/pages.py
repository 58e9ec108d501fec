"""What the page tests share: a realistic deletion-request record (schema
classunlearn.record/1: CIFAR-10, class 1 "automobile" forgotten by RWFT, five references)
and a check that a page's tags are balanced."""

from __future__ import annotations

import copy
from html.parser import HTMLParser

import numpy as np

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


def _roc(strength: float, n: int = 60) -> tuple[list[float], list[float]]:
    """A smooth ROC-like curve from (0, 0) to (1, 1); strength 1 = chance."""
    fpr = np.r_[0.0, np.geomspace(1e-3, 1, n)]
    return fpr.tolist(), np.clip(fpr ** (1 / strength), 0, 1).tolist()


def example_record() -> dict:
    """A fresh copy of the example record (tests may change it)."""
    fpr, tpr = _roc(1.35)
    null_fpr, null_tpr = _roc(1.2)
    sha = "9f2c4e1a7b3d5c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7f"
    return copy.deepcopy({
        "schema": "classunlearn.record/1",
        "request": {"forget_classes": [{"index": 1, "name": "automobile"}],
                    "note": "customer request #4711: remove all automobile images",
                    "time": "2026-12-02T17:00:00Z",
                    "previous": {"record": "runs/requests/0001/record.json",
                                 "sha256": sha[::-1]},
                    "forgotten_before": [{"index": 9, "name": "truck"}]},
        "files": {"data": {"data/cifar10/data_batch_1.bin": sha,
                           "data/cifar10/test_batch.bin": sha[8:] + sha[:8]},
                  "original": {"path": "models/cifar10-resnet18.safetensors",
                               "sha256": sha[4:] + sha[:4]},
                  "unlearned": {"path": "runs/requests/0002/unlearned.safetensors",
                                "sha256": sha[12:] + sha[:12]},
                  "references": [{"path": f"runs/references/ref{i}.safetensors",
                                  "sha256": sha[i:] + sha[:i]} for i in range(5)]},
        "method": {"name": "rwft", "params": {"epochs": 2, "lr": 0.01, "alpha": 1.0},
                   "seed": 1, "run_s": 12.3, "retrain_s": 40.1, "ratio_to_retrain": 0.31},
        "metrics": {
            "acc_forget": {"value": 0.4, "references_mean": 0.0, "references_std": 0.0,
                           "references": [0.0, 0.0, 0.0, 0.0, 0.0]},
            "test_acc_retain": {"value": 92.8, "references_mean": 93.4,
                                "references_std": 0.3,
                                "references": [93.1, 93.8, 93.5, 93.0, 93.6]},
            "mia_nn_z": {"value": 1.1, "references_mean": 0.0, "references_std": 1.0,
                         "references": [-0.8, 1.2, 0.3, -1.1, 0.4]},
            "ulira": {"value": 58.2, "references_mean": None, "references_std": None,
                      "references": []}},
        "verdicts": [
            {"attack": "accuracy", "verdict": "pass", "passed": True,
             "rule": "pass iff Acc_f lies in the references' Acc_f range widened by max(2 "
                     "points, their sd) on both sides and TA_r is at least the references' "
                     "minimum TA_r minus max(2 points, their sd)",
             "numbers": {"acc_forget": 0.4, "test_acc_retain": 92.8, "n_references": 5,
                         "acc_forget_low": -2.0, "acc_forget_high": 2.0,
                         "test_acc_retain_low": 91.0}},
            {"attack": "mia_nn", "verdict": "within the references' spread", "passed": True,
             "rule": "leaks iff z >= 3 with at least 5 references; within the references' "
                     "spread iff z < 2 (at least 2 references); else inconclusive",
             "numbers": {"z": 1.1, "n_references": 5, "z_leak": 3.0, "z_spread": 2.0}},
            {"attack": "ulira", "verdict": "inconclusive", "passed": None,
             "rule": "distinguishable iff the lower end of the attack's interval is above the "
                     "upper end of the null's; indistinguishable iff its point estimate is at "
                     "most the null's upper end; else inconclusive",
             "numbers": {"point": 58.2, "low": 54.1, "high": 63.0, "null_point": 55.0,
                         "null_low": 51.2, "null_high": 57.9, "level": 0.95}}],
        "evidence": {
            "class_names": CLASS_NAMES,
            "forget_distribution": {
                "original": [0.01, 0.93, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01, 0.05],
                "unlearned": [0.08, 0.01, 0.01, 0.01, 0.0, 0.01, 0.01, 0.02, 0.12, 0.73],
                "retrained": [0.07, 0.0, 0.01, 0.02, 0.0, 0.01, 0.01, 0.02, 0.1, 0.76]},
            "ulira_roc": {"fpr": fpr, "tpr": tpr, "null_fpr": null_fpr, "null_tpr": null_tpr},
            "mia_nn": {"value": 51.9, "references": [49.8, 50.6, 52.4, 48.9, 50.3]}},
        "environment": {"classunlearn": "0.4.0", "git_commit": "e6c7d75", "python": "3.11.9",
                        "torch": "2.13.0", "device": "cpu"},
        "command": ["classunlearn", "forget", "--checkpoint",
                    "models/cifar10-resnet18.safetensors", "--forget", "automobile",
                    "--method", "rwft", "--references", "runs/references",
                    "--note", "customer request #4711: remove all automobile images"],
    })


class _Checker(HTMLParser):
    """Fails on unbalanced tags."""

    VOID = {"img", "meta", "br", "hr", "link", "input", "wbr", "col", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass  # <img .../>

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack)
        self.stack.pop()


def check_balanced(page: str) -> None:
    """Every opened tag is closed in order (void elements aside), and the page is HTML5."""
    assert page.startswith("<!doctype html>")
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
