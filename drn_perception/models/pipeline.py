"""The whole per-frame computation as one module, the graph every backend runs.

uint8 (N, H, W, 3) RGB -> float /255 -> (x - mean) / std -> NCHW -> DRNSeg logits at input
size -> argmax -> int32 labels (N, H, W), and optionally the max softmax probability.
The normalisation is done in the same order as the authors' ToTensor + Normalize, so labels
match theirs bit for bit on the same image.
"""
from __future__ import annotations

import torch
from torch import nn

from drn_perception.models.segmentation import DRNSeg


class SegmentationPipeline(nn.Module):
    def __init__(self, model: DRNSeg, mean, std, confidence: bool = True):
        super().__init__()
        self.model = model
        self.confidence = confidence
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits (N, C, H, W); the network itself may run in another dtype."""
        x = self.normalise(images)
        dtype = self.model.seg.weight.dtype
        return self.model(x if dtype == torch.float32 else x.to(dtype)).float()

    @staticmethod
    def decode(logits: torch.Tensor, confidence: bool):
        labels = torch.argmax(logits, dim=1).to(torch.int32)
        if not confidence:
            return labels
        return labels, torch.softmax(logits, dim=1).amax(dim=1)

    def forward(self, images: torch.Tensor):
        return self.decode(self.logits(images), self.confidence)
