"""Compute every model's logits once per split and turn them into metrics.

This is the layer between models and the pure metric functions of `classunlearn.audit`:
it runs models, `audit` only ever sees their outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from classunlearn.audit.basic import accuracy, per_class_accuracy, tv_to_references
from classunlearn.data import ForgetSplit
from classunlearn.train import predict_logits

PARTS = ("train_forget", "train_retain", "test_forget", "test_retain")


@dataclass
class SplitLogits:
    """A model's logits on D_f, D_r, T_f and T_r, computed once and reused by every metric."""

    train_forget: torch.Tensor
    train_retain: torch.Tensor
    test_forget: torch.Tensor
    test_retain: torch.Tensor

    @classmethod
    def of(cls, model: nn.Module, split: ForgetSplit, device: str | None = None) -> SplitLogits:
        d = split.dataset
        train = predict_logits(model, d.x_train, device=device)
        test = predict_logits(model, d.x_test, device=device)
        return cls(train[split.train_forget], train[split.train_retain],
                   test[split.test_forget], test[split.test_retain])

    def test_all(self, split: ForgetSplit) -> torch.Tensor:
        """Logits on the whole test split, in dataset order."""
        out = torch.empty(len(split.dataset.y_test), self.test_forget.shape[1])
        out[split.test_forget] = self.test_forget
        out[split.test_retain] = self.test_retain
        return out


def basic_metrics(logits: SplitLogits, split: ForgetSplit,
                  references: list[SplitLogits] | None = None) -> dict:
    """Acc_r, Acc_f, TA_r, TA_f (percent), per-class test accuracy, and TV distances to the
    references' mean output (on T_f as `tv`, and on D_f and T_r)."""
    lab = {p: split.part(p)[1] for p in PARTS}
    out: dict = {
        "acc_retain": accuracy(logits.train_retain, lab["train_retain"]),
        "acc_forget": accuracy(logits.train_forget, lab["train_forget"]),
        "test_acc_retain": accuracy(logits.test_retain, lab["test_retain"]),
        "test_acc_forget": accuracy(logits.test_forget, lab["test_forget"]),
        "per_class_test_acc": per_class_accuracy(logits.test_all(split), split.dataset.y_test,
                                                 split.dataset.num_classes),
    }
    if references:
        out["tv"] = tv_to_references(logits.test_forget, [r.test_forget for r in references])
        out["tv_train_forget"] = tv_to_references(logits.train_forget,
                                                  [r.train_forget for r in references])
        out["tv_test_retain"] = tv_to_references(logits.test_retain,
                                                 [r.test_retain for r in references])
    return out
