"""Pure metric functions over logits/probabilities and labels. Nothing here trains or runs
a model: what needs models (references, shadows) is produced by the caller."""

import sys

from classunlearn import _callable_module
from classunlearn.audit.basic import (
    accuracy,
    avg_gap,
    per_class_accuracy,
    tv_between_distributions,
    tv_distance,
    tv_to_references,
)
from classunlearn.audit.mia_nn import mia_nn_audit, mia_nn_score, nearest_neighbour_class
from classunlearn.audit.svc_mia import svc_mia
from classunlearn.audit.ulira import (
    logit_confidence,
    ulira_attack,
    ulira_leave_one_out,
    ulira_scores,
    ulira_target_score,
)
from classunlearn.audit.verdicts import (
    Verdict,
    accuracy_verdict,
    mia_nn_verdict,
    ulira_interval,
    ulira_null,
    ulira_phi_interval,
    ulira_verdict,
)

__all__ = [
    "Verdict",
    "accuracy",
    "accuracy_verdict",
    "avg_gap",
    "logit_confidence",
    "mia_nn_audit",
    "mia_nn_score",
    "mia_nn_verdict",
    "nearest_neighbour_class",
    "per_class_accuracy",
    "svc_mia",
    "tv_between_distributions",
    "tv_distance",
    "tv_to_references",
    "ulira_attack",
    "ulira_interval",
    "ulira_leave_one_out",
    "ulira_null",
    "ulira_phi_interval",
    "ulira_scores",
    "ulira_target_score",
    "ulira_verdict",
]

_callable_module(sys.modules[__name__], "audit")  # cu.audit(...): the API's
