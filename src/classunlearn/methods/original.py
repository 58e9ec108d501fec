"""Original: the model before unlearning, returned unchanged (the upper bound on leakage)."""

from __future__ import annotations

from torch import nn

from classunlearn.methods import register
from classunlearn.methods.base import Method, MethodParams, RunContext, UnlearnData


@register
class Original(Method):
    """No-op baseline: θ_u = θ_o (docs/readings.md section 6)."""

    name = "original"
    summary = "no unlearning: the original model, unchanged (baseline)"
    source = "baseline of every unlearning paper (docs/readings.md section 6)"
    Params = MethodParams
    needs_training = False

    def run(self, model: nn.Module, data: UnlearnData, params: MethodParams, ctx: RunContext
            ) -> nn.Module:
        return model
