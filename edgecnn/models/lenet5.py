"""LeNet-5 (LeCun et al., 1998): 1x32x32 input, conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> classes.

ReLU and max-pooling replace the original tanh/subsampling, as in every modern reproduction.
Each activation/pool is its own module instance: pt2e quantization needs one module per use.
"""

from __future__ import annotations

from torch import nn


class LeNet5(nn.Module):
    default_input_size = 32

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
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
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels)
