"""DRN segmentation model: backbone -> 1x1 classifier -> fixed bilinear x8 upsampling.

Laid out like the authors' ``DRNSeg`` (segment.py) so their checkpoints load by name:
``base`` is the classification network's children minus avgpool and fc, ``seg`` the 1x1
classifier (with bias), ``up`` a depthwise ConvTranspose2d (16x16, stride 8, padding 4) whose
frozen weights are the bilinear kernel.

Any input size works, as in the authors' code: each stride-2 layer rounds up, so the
up-sampled map is 8*ceil(H/8) x 8*ceil(W/8), aligned top-left with the input; ``forward``
crops it to [:H, :W] (a view, no copy): the authors' output at input size (``uncropped``
returns the whole map).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from drn_perception.models.drn import build_drn

OUTPUT_STRIDE = 8


def bilinear_kernel(size: int) -> torch.Tensor:
    """The (size x size) bilinear interpolation kernel the reference fills ``up`` with."""
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = torch.tensor([1 - abs(i / f - c) for i in range(size)], dtype=torch.float64)
    return torch.outer(ramp, ramp).float()


class DRNSeg(nn.Module):
    def __init__(self, arch: str, num_classes: int, width: float = 1.0):
        super().__init__()
        if num_classes < 1 or num_classes > 255:
            raise ValueError(f"num_classes must be 1..255 (labels are mono8, 255 = unknown), got {num_classes}")
        backbone = build_drn(arch, num_classes=1000, width=width)
        self.arch = arch
        self.width = width
        self.num_classes = num_classes
        self.base = nn.Sequential(*list(backbone.children())[:-2])
        self.backbone_names = [name for name, _ in backbone.named_children()][:-2]
        self.seg = nn.Conv2d(backbone.out_dim, num_classes, 1, bias=True)
        n = num_classes  # kernel 1x1: n = k*k*out_channels
        nn.init.normal_(self.seg.weight, 0.0, math.sqrt(2.0 / n))
        nn.init.zeros_(self.seg.bias)
        self.up = nn.ConvTranspose2d(num_classes, num_classes, 2 * OUTPUT_STRIDE, stride=OUTPUT_STRIDE,
                                     padding=OUTPUT_STRIDE // 2, groups=num_classes, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_kernel(2 * OUTPUT_STRIDE).expand_as(self.up.weight))
        self.up.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float (N, 3, H, W), any H and W -> logits (N, C, H, W) at input size."""
        h, w = x.shape[-2:]
        return self.uncropped(x)[:, :, :h, :w]

    def uncropped(self, x: torch.Tensor) -> torch.Tensor:
        """The authors' output: logits (N, C, 8*ceil(H/8), 8*ceil(W/8)), top-left aligned with x."""
        return self.up(self.seg(self.base(x)))

    def optim_parameters(self):
        """What training updates: backbone and classifier (``up`` stays the bilinear kernel)."""
        yield from self.base.parameters()
        yield from self.seg.parameters()

    def load_backbone_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a classification checkpoint's weights (conv1/layer1/... keys) into ``base``."""
        index = {name: str(i) for i, name in enumerate(self.backbone_names)}
        mapped = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in ("fc", "avgpool"):
                continue
            if head not in index:
                raise KeyError(f"unexpected backbone key {key!r} for {self.arch}")
            mapped[f"{index[head]}.{rest}"] = value
        self.base.load_state_dict(mapped, strict=True)
