"""A user-defined CNN with batch norm, outside the classunlearn package (docs/own_model.md).

classunlearn builds it from this file wherever a model name is accepted:
``classunlearn train --model examples/my_cnn.py:build ...`` on the command line, and
``model_fn=build`` (or ``"examples/my_cnn.py:build"``) in ``cu.audit`` and ``cu.bench``.
"""

from torch import nn


class MyCNN(nn.Module):
    """Two conv-batchnorm-ReLU blocks, global average pooling and a linear output layer
    named ``head`` (TRW's `weights`/`features` similarity and BE find it by that name)."""

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def build(input_shape, num_classes, width=16):
    """The model factory: (input_shape, num_classes, **model_args) -> nn.Module."""
    return MyCNN(input_shape[0], num_classes, width)
