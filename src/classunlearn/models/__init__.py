"""Model registry: MLP, small CNN and CIFAR-style ResNet-18, written here (no torchvision).

Every model is a :class:`Classifier`: a ``body`` that maps inputs to penultimate features
and a linear ``head`` that maps features to logits. TRW's `weights` and `features`
similarity sources read those two parts; for a user's own model the same parts are
found with :func:`final_linear`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from classunlearn.errors import ParameterError


class Classifier(nn.Module):
    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 256, depth: int = 2
        ) -> Classifier:
    """Fully connected net: `depth` hidden ReLU layers of widths hidden, hidden/2, ..."""
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = math.prod(input_shape)
    width = hidden
    for _ in range(depth):
        layers += [nn.Linear(width_in, width), nn.ReLU()]
        width_in, width = width, max(width // 2, 8)
    return Classifier(nn.Sequential(*layers), width_in, num_classes)


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> Classifier:
    """Small CNN: two conv blocks and a dense layer; Conv1d for (C, L) inputs, Conv2d for
    (C, H, W). No batch norm, so shadow models can be trained as one stacked ensemble."""
    if len(input_shape) not in (2, 3):
        raise ParameterError(
            f"model 'cnn' needs inputs shaped (C, L) or (C, H, W), got {input_shape}; use 'mlp'"
        )
    conv, pool, adapt, side = (
        (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, 4)
        if len(input_shape) == 3
        else (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d, 8)
    )
    c = input_shape[0]
    body = nn.Sequential(
        conv(c, width, 3, padding=1), nn.ReLU(),
        conv(width, width, 3, padding=1), nn.ReLU(), pool(2),
        conv(width, 2 * width, 3, padding=1), nn.ReLU(),
        adapt(side), nn.Flatten(),
        nn.Linear(2 * width * side ** (len(input_shape) - 1), 128), nn.ReLU(),
    )
    return Classifier(body, 128, num_classes)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> Classifier:
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool); `width` scales every stage (64 is
    the standard net, 16 a narrow variant for CPU work). Works for 32x32 and 64x64 inputs."""
    if len(input_shape) != 3:
        raise ParameterError(f"model 'resnet18' needs image inputs (C, H, W), got {input_shape}")
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
    ]
    c_in = width
    for i, c_out in enumerate([width, 2 * width, 4 * width, 8 * width]):
        stride = 1 if i == 0 else 2
        layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), c_in, num_classes)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    build: Callable[..., Classifier]
    stackable: bool  # no batch norm: shadow copies can be trained as one vmapped ensemble


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo("mlp", "fully connected ReLU net (hidden=256, depth=2)", mlp, True),
        ModelInfo("cnn", "small CNN, Conv1d or Conv2d by input rank (width=32)", cnn, True),
        ModelInfo("resnet18", "CIFAR-style ResNet-18 with batch norm (width=64)", resnet18,
                  False),
    ]
}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int,
                seed: int | None = None, **kwargs: object) -> Classifier:
    """Build a registered model; with `seed`, its initial weights depend on that seed only
    (the global RNG is left as it was). Unknown names or arguments are refused in one line."""
    if name not in MODELS:
        raise ParameterError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return MODELS[name].build(tuple(input_shape), num_classes, **kwargs)
    except (TypeError, RuntimeError, ValueError) as e:  # unknown argument, impossible size
        raise ParameterError(f"bad arguments {kwargs} for model '{name}': {e}; fix --model-arg"
                             ) from None


def final_linear(model: nn.Module) -> nn.Linear:
    """The classifier's last linear layer (its rows are the class weight vectors)."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError("the model has no nn.Linear layer; similarity 'weights' and "
                             "'features' need one as its final layer")
    return linears[-1]


__all__ = ["MODELS", "Classifier", "ModelInfo", "build_model", "cnn", "final_linear", "mlp",
           "resnet18"]
