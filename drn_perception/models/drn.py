"""Dilated Residual Networks (Yu, Koltun & Funkhouser, CVPR 2017): DRN-A, DRN-C and DRN-D.

All twelve variants of the authors' drn.py (``VARIANTS``): DRN-A-50; DRN-C-26/42/58;
DRN-D-22/24/38/40/54/56/105/107 (D-24/40/56/107 have two blocks in the degridding levels 7-8).

The module and parameter layout follows the authors' implementation, so their checkpoints
load by name: DRN-C has conv1/bn1/relu + layer1..layer8, DRN-D has layer0 + layer1..layer8,
DRN-A is a ResNet with layers 3-4 dilated. With ``width=1.0`` every variant is exactly the
reference; other widths scale every channel count (rounded to a multiple of 4, at least 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn


def conv3x3(inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=(1, 1), residual=True):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=(1, 1), residual=True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        # As in the reference, bottlenecks are always residual.

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes))


class DRN(nn.Module):
    """DRN-C / DRN-D: levels 1-8, strides (1,2,2,2,1,1,1,1), dilations (1,1,1,1,2,4,2,1)."""

    def __init__(self, block, layers, num_classes=1000, channels=(16, 32, 64, 128, 256, 512, 512, 512),
                 arch="D", pool_size=28):
        super().__init__()
        if arch not in ("C", "D"):
            raise ValueError(f"DRN arch must be 'C' or 'D', got {arch!r}")
        self.inplanes = channels[0]
        self.out_dim = channels[-1]
        self.arch = arch
        if arch == "C":
            self.conv1 = nn.Conv2d(3, channels[0], 7, stride=1, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(channels[0])
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self._make_layer(BasicBlock, channels[0], layers[0], stride=1)
            self.layer2 = self._make_layer(BasicBlock, channels[1], layers[1], stride=2)
        else:
            self.layer0 = nn.Sequential(
                nn.Conv2d(3, channels[0], 7, stride=1, padding=3, bias=False),
                nn.BatchNorm2d(channels[0]),
                nn.ReLU(inplace=True),
            )
            self.layer1 = self._make_conv_layers(channels[0], layers[0], stride=1)
            self.layer2 = self._make_conv_layers(channels[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, channels[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, channels[3], layers[3], stride=2)
        self.layer5 = self._make_layer(block, channels[4], layers[4], dilation=2, new_level=False)
        self.layer6 = self._make_layer(block, channels[5], layers[5], dilation=4, new_level=False)
        # Degridding levels 7-8: basic blocks without residual connections (C) or plain convs (D).
        if arch == "C":
            self.layer7 = self._make_layer(BasicBlock, channels[6], layers[6], dilation=2, new_level=False, residual=False)
            self.layer8 = self._make_layer(BasicBlock, channels[7], layers[7], dilation=1, new_level=False, residual=False)
        else:
            self.layer7 = self._make_conv_layers(channels[6], layers[6], dilation=2)
            self.layer8 = self._make_conv_layers(channels[7], layers[7], dilation=1)
        self.avgpool = nn.AvgPool2d(pool_size)
        self.fc = nn.Conv2d(self.out_dim, num_classes, 1, bias=True)
        _init_weights(self)

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1, new_level=True, residual=True):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _downsample(self.inplanes, planes * block.expansion, stride)
        first_dilation = (1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation)
        layers = [block(self.inplanes, planes, stride, downsample, dilation=first_dilation, residual=residual)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, residual=residual, dilation=(dilation, dilation)) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _make_conv_layers(self, channels, convs, stride=1, dilation=1):
        modules = []
        for i in range(convs):
            modules += [
                nn.Conv2d(self.inplanes, channels, 3, stride=stride if i == 0 else 1,
                          padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            self.inplanes = channels
        return nn.Sequential(*modules)

    def features(self, x):
        if self.arch == "C":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.layer0(x)
        for i in range(1, 9):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward(self, x):
        return self.fc(self.avgpool(self.features(x))).flatten(1)


class DRNA(nn.Module):
    """DRN-A: ResNet with max-pooling stem, layers 3-4 at stride 1 with dilation 2 and 4."""

    def __init__(self, block, layers, num_classes=1000, width=64):
        super().__init__()
        self.inplanes = width
        self.out_dim = width * 8 * block.expansion
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], dilation=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], dilation=4)
        self.avgpool = nn.AvgPool2d(28, stride=1)
        self.fc = nn.Linear(self.out_dim, num_classes)
        _init_weights(self)

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _downsample(self.inplanes, planes * block.expansion, stride)
        # The reference gives the first block of a dilated layer no dilation; kept for parity.
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=(dilation, dilation)) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(self.avgpool(self.features(x)).flatten(1))


@dataclass(frozen=True)
class Variant:
    family: str  # "A", "C" or "D"
    block: type
    layers: tuple[int, ...]


VARIANTS: dict[str, Variant] = {
    "drn_a_50": Variant("A", Bottleneck, (3, 4, 6, 3)),
    "drn_c_26": Variant("C", BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_c_42": Variant("C", BasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_c_58": Variant("C", Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_22": Variant("D", BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_24": Variant("D", BasicBlock, (1, 1, 2, 2, 2, 2, 2, 2)),
    "drn_d_38": Variant("D", BasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_40": Variant("D", BasicBlock, (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_54": Variant("D", Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_56": Variant("D", Bottleneck, (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_105": Variant("D", Bottleneck, (1, 1, 3, 4, 23, 3, 1, 1)),
    "drn_d_107": Variant("D", Bottleneck, (1, 1, 3, 4, 23, 3, 2, 2)),
}
ARCHS = tuple(VARIANTS)
REFERENCE_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)


def scaled(channels: int, width: float) -> int:
    return channels if width == 1.0 else max(4, int(round(channels * width / 4)) * 4)


def build_drn(arch: str, num_classes: int = 1000, width: float = 1.0) -> DRN | DRNA:
    """A DRN classification network; ``width`` scales every channel count (1.0 = reference)."""
    try:
        v = VARIANTS[arch]
    except KeyError:
        raise ValueError(f"unknown DRN architecture {arch!r}; known: {', '.join(ARCHS)}") from None
    if not 0.0 < width <= 4.0:
        raise ValueError(f"width multiplier must be in (0, 4], got {width}")
    if v.family == "A":
        return DRNA(v.block, v.layers, num_classes, width=scaled(64, width))
    channels = tuple(scaled(c, width) for c in REFERENCE_CHANNELS)
    return DRN(v.block, v.layers, num_classes, channels=channels, arch=v.family)
