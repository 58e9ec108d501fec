"""Pure metric functions over logits/probabilities and labels. Nothing here trains or runs
a model: what needs models (references, shadows) is produced by the caller."""

from classunlearn.audit.basic import (
    accuracy,
    avg_gap,
    per_class_accuracy,
    tv_between_distributions,
    tv_distance,
    tv_to_references,
)

__all__ = [
    "accuracy",
    "avg_gap",
    "per_class_accuracy",
    "tv_between_distributions",
    "tv_distance",
    "tv_to_references",
]
