"""The 3-conv CIFAR-10 network of the classic PyTorch tutorial.

conv 32/64/128 3x3 pad 1, each ReLU + 2x2 max-pool, fc 128*4*4=2048 -> 512, dropout 0.5, fc 512 -> classes.
"""

from __future__ import annotations

from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


class SimpleCNN(nn.Module):
    default_input_size = 32

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(_block(in_channels, 32), _block(32, 64), _block(64, 128))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def simplecnn(num_classes: int = 10, in_channels: int = 3) -> SimpleCNN:
    return SimpleCNN(num_classes=num_classes, in_channels=in_channels)
