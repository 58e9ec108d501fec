"""Compute every model's logits once per split and turn them into metrics.

This is the layer between models and the pure metric functions of `classunlearn.audit`:
it runs models, `audit` only ever sees their outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


def nn_classes(split: ForgetSplit, references: list[SplitLogits]) -> dict[int, int]:
    """Nearest-neighbour class of each forget class, from the references' mean probability
    over its forget (train) samples (docs/readings.md section 3 item 1)."""
    from scipy.special import softmax

    from classunlearn.audit.mia_nn import nearest_neighbour_class

    y = split.part("train_forget")[1].numpy()
    return {f: nearest_neighbour_class(
        [softmax(r.train_forget.numpy()[y == f], axis=1) for r in references],
        split.forget_classes) for f in split.forget_classes}


def reference_mia_scores(split: ForgetSplit, references: list[SplitLogits], nn: dict[int, int],
                         mia_feature: str | None = None, mia_seed: int = 0
                         ) -> dict[int, list[float]]:
    """Each reference's MIA-NN score per forget class, computed once per study with the same
    folds (`mia_seed`) as every audited model."""
    from classunlearn.audit.mia_nn import DEFAULT_FEATURE, mia_nn_score

    y = split.dataset.y_test.numpy()
    return {f: [mia_nn_score(r.test_all(split).numpy(), y, f, nn[f],
                             feature=mia_feature or DEFAULT_FEATURE, seed=mia_seed).score
                for r in references] for f in split.forget_classes}


def attack_metrics(logits: SplitLogits, split: ForgetSplit, references: list[SplitLogits],
                   nn: dict[int, int], mia_feature: str | None = None,
                   svc_feature: str | None = None, seed: int = 0,
                   reference_mia: dict[int, list[float]] | None = None,
                   mia_seed: int = 0) -> dict:
    """SVC-MIA and MIA-NN (score, gap and z against the references; averaged over forget
    classes when several are forgotten). Pass the audited model's own references only:
    auditing a reference means passing the *other* references (and an `nn` chosen without
    it). `reference_mia` (from reference_mia_scores with the same `mia_seed`) saves
    re-scoring the references for every model. `seed` seeds SVC-MIA's member subsample,
    `mia_seed` MIA-NN's folds (the same for every model compared)."""
    from classunlearn.audit.mia_nn import DEFAULT_FEATURE as MIA_NN_DEFAULT
    from classunlearn.audit.mia_nn import mia_nn_audit
    from classunlearn.audit.svc_mia import DEFAULT_FEATURE as SVC_DEFAULT
    from classunlearn.audit.svc_mia import svc_mia

    mia_feature = mia_feature or MIA_NN_DEFAULT
    svc_feature = svc_feature or SVC_DEFAULT
    lab = {p: split.part(p)[1].numpy() for p in PARTS}
    svc = svc_mia(logits.train_retain.numpy(), lab["train_retain"],
                  logits.test_retain.numpy(), lab["test_retain"],
                  logits.train_forget.numpy(), lab["train_forget"],
                  feature=svc_feature, seed=seed)
    out = {"svc_mia": svc.score, "svc_mia_feature": svc.feature}
    if len(references) >= 1:
        y_test = split.dataset.y_test.numpy()
        results = [mia_nn_audit(logits.test_all(split).numpy(),
                                [r.test_all(split).numpy() for r in references], y_test,
                                f, nn[f], feature=mia_feature, seed=mia_seed,
                                reference_scores=(reference_mia or {}).get(f))
                   for f in split.forget_classes]
        mean = lambda key: float(np.mean([getattr(r, key) for r in results]))  # noqa: E731
        out.update(mia_nn=mean("score"), mia_nn_gap=mean("gap"), mia_nn_z=mean("z"),
                   mia_nn_auc=mean("auc"), mia_nn_ref_mean=mean("reference_mean"),
                   mia_nn_ref_std=mean("reference_std"), mia_nn_feature=mia_feature,
                   nn_class={str(f): c for f, c in nn.items()})
    return out


def ulira_metrics(split: ForgetSplit, replay_phi: np.ndarray, shadow_originals: dict,
                  shadow_retrains: dict, audited: list[SplitLogits] = ()):
    """U-LiRA from the units of a study: the method replayed on the shadow originals
    (`replay_phi`, N x |D_f|) against the shadow retrains. Shadow originals were trained on
    halves of the whole train split, so their mask columns at D_f's indices say which forget
    samples each one saw. Returns (metrics, UliraResult, flagged): `flagged` is, for each
    model in `audited`, the share of D_f the shadows call "unlearned". In `metrics`,
    ``ulira`` and ``ulira_auc`` are the cross-fitted accuracy and AUC, ``ulira_in_sample``
    and ``ulira_auc_in_sample`` the in-sample ones (threshold and direction chosen on the
    decisions scored; the verdict's statistic is the in-sample accuracy)."""
    from classunlearn.audit.ulira import (
        logit_confidence,
        ulira_leave_one_out,
        ulira_target_score,
    )

    in_mask = np.asarray(shadow_originals["mask"])[:, split.train_forget.numpy()].astype(bool)
    unlearned_phi = np.asarray(replay_phi)
    retrained_phi = np.asarray(shadow_retrains["phi"])
    u = ulira_leave_one_out(unlearned_phi, in_mask, retrained_phi)
    # the headline is cross-fitted (50 in expectation at chance; None, never the in-sample
    # number, without 2 targets per side); the in-sample numbers are those of Hayes et al.'s
    # tables and read above 50 at chance (docs/audit.md, U-LiRA)
    metrics = {"ulira": u.accuracy_held_out, "ulira_auc": u.auc_held_out,
               "ulira_in_sample": u.accuracy_best, "ulira_auc_in_sample": u.auc,
               "ulira_at_zero": u.accuracy_at_zero, "ulira_tpr_at_1fpr": u.tpr_at_1pct_fpr,
               "ulira_auc_raw": u.auc_raw,
               # +1: unlearned models look unlearned, -1: reversed (docs/audit.md), 0: none
               "ulira_direction": {"expected": 1, "reversed": -1}.get(u.direction, 0)}
    y_f = split.part("train_forget")[1].numpy()
    flagged = [ulira_target_score(logit_confidence(lg.train_forget.numpy(), y_f), None,
                                  unlearned_phi, in_mask, retrained_phi) for lg in audited]
    return metrics, u, flagged
