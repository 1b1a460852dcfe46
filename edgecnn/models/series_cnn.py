"""1-D CNNs for sensor windows and audio features: `cnn1d` and `dscnn` (KWS-style, depthwise separable).

Input [N, C, 1, T] (a series bundle's layout "NC1T"): every 1-D convolution is written as a 2-D one
with a 1 x k kernel, so ONNX, TFLite and TFLite Micro see H = 1 convolutions (NHWC [N, 1, T, C] on
TFLite, the shape CMSIS-NN's 1xN kernels take), and pruning, QAT and the exporters handle them as
they handle image CNNs. Global average pooling makes both independent of the window length.

cnn1d: three conv(1 x k)-BN-ReLU blocks (k = 7, 5, 3; `width`, 2 x width, 2 x width channels), a 1 x 2
max pool after the first two while the window is long enough, global average pooling, one Linear.
dscnn: the DS-CNN of "Hello Edge" (Zhang et al. 2017) in 1-D: a conv(1 x 5) stem, four depthwise
(1 x 3) + pointwise (1 x 1) blocks, each with BN-ReLU, global average pooling, one Linear.
"""

from __future__ import annotations

from torch import nn


def _conv(cin: int, cout: int, k: int, groups: int = 1, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, (1, k), stride=(1, stride), padding=(0, k // 2), groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


class CNN1D(nn.Module):
    def __init__(self, num_classes: int = 4, in_channels: int = 6, width: int = 32, dropout: float = 0.1):
        super().__init__()
        w = int(width)
        self.features = nn.Sequential(
            *_conv(in_channels, w, 7), nn.MaxPool2d((1, 2)),
            *_conv(w, 2 * w, 5), nn.MaxPool2d((1, 2)),
            *_conv(2 * w, 2 * w, 3),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * w, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class DSCNN(nn.Module):
    def __init__(self, num_classes: int = 12, in_channels: int = 10, width: int = 64, dropout: float = 0.1):
        super().__init__()
        w = int(width)
        layers = _conv(in_channels, w, 5)
        for _ in range(4):
            layers += _conv(w, w, 3, groups=w) + _conv(w, w, 1)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(w, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def cnn1d(num_classes: int = 4, in_channels: int = 6, width: int = 32) -> CNN1D:
    """Small 1-D CNN (conv/BN/ReLU x3, global pooling) for sensor windows: MCU-sized."""
    return CNN1D(num_classes=num_classes, in_channels=in_channels, width=width)


def dscnn(num_classes: int = 12, in_channels: int = 10, width: int = 64) -> DSCNN:
    """Depthwise-separable 1-D CNN (KWS DS-CNN style) for audio features or sensor windows."""
    return DSCNN(num_classes=num_classes, in_channels=in_channels, width=width)
