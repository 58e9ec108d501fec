"""Pure metric functions over logits/probabilities and labels. Nothing here trains or runs
a model: what needs models (references, shadows) is produced by the caller.

The names below load from their modules on first use (PEP 562), so that importing the
package root, which makes this module callable (``cu.audit(...)``), stays cheap."""

from classunlearn._lazy import lazy_names

_MODULE_OF = {
    **dict.fromkeys(["accuracy", "avg_gap", "per_class_accuracy", "tv_between_distributions",
                     "tv_distance", "tv_to_references"], "basic"),
    **dict.fromkeys(["mia_nn_audit", "mia_nn_score", "nearest_neighbour_class"], "mia_nn"),
    "svc_mia": "svc_mia",
    **dict.fromkeys(["logit_confidence", "ulira_attack", "ulira_leave_one_out", "ulira_scores",
                     "ulira_target_score"], "ulira"),
    **dict.fromkeys(["Verdict", "accuracy_verdict", "mia_nn_verdict", "ulira_interval",
                     "ulira_null", "ulira_phi_interval", "ulira_verdict"], "verdicts"),
}

__getattr__, __dir__ = lazy_names(__name__,
                                  {k: f"{__name__}.{m}" for k, m in _MODULE_OF.items()})
__all__ = sorted(_MODULE_OF)
