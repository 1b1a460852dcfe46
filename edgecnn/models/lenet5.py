"""LeNet-5 (LeCun et al., 1998): 1x32x32 input, conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> classes.

ReLU and max-pooling replace the original tanh/subsampling, as in every modern reproduction.
Each activation/pool is its own module instance: pt2e quantization needs one module per use.
Other input sides (`input_size`, 16 px and up) keep the layers and size the first fully
connected layer from the feature map (16 x 5 x 5 at 32 px), so the 32 px network is unchanged.
"""

from __future__ import annotations

from torch import nn

from ..errors import EdgeCNNError

MIN_INPUT_SIZE = 16  # two 5x5 convs and two 2x2 pools leave a 1x1 map


def feature_side(input_size: int) -> int:
    """Side of the last feature map for a square input: ((s - 4) // 2 - 4) // 2."""
    return ((input_size - 4) // 2 - 4) // 2


class LeNet5(nn.Module):
    default_input_size = 32

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32):
        super().__init__()
        if input_size < MIN_INPUT_SIZE:
            raise EdgeCNNError(f"lenet5 needs an input of at least {MIN_INPUT_SIZE} px, got {input_size}")
        side = feature_side(input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: int = 32) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
