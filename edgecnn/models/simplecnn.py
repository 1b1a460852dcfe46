"""The 3-conv CIFAR-10 network of the classic PyTorch tutorial.

conv 32/64/128 3x3 pad 1, each ReLU + 2x2 max-pool, fc 128*4*4=2048 -> 512, dropout 0.5, fc 512 -> classes.
Other input sides (`input_size`, 8 px and up): when the last map's side is a multiple of 4 (64, 96,
128 px...) an average pool brings it to the same 4x4, so the classifier keeps its size; otherwise
(28, 40 px...) the first fully connected layer is sized from the map. The 32 px network is unchanged.
"""

from __future__ import annotations

from torch import nn

from ..errors import EdgeCNNError

MIN_INPUT_SIZE = 8  # three 2x2 pools leave a 1x1 map


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


class SimpleCNN(nn.Module):
    default_input_size = 32

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32):
        super().__init__()
        if input_size < MIN_INPUT_SIZE:
            raise EdgeCNNError(f"simplecnn needs an input of at least {MIN_INPUT_SIZE} px, got {input_size}")
        blocks = [_block(in_channels, 32), _block(32, 64), _block(64, 128)]
        side = input_size // 8
        if side != 4 and side % 4 == 0:
            # A fixed-kernel pool exports as a plain AveragePool (ONNX, TFLite); no parameters.
            blocks.append(nn.AvgPool2d(side // 4))
            side = 4
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def simplecnn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> SimpleCNN:
    return SimpleCNN(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
