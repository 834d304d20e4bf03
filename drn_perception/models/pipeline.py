"""The whole per-frame computation as one module, the graph every backend runs.

uint8 (N, H, W, 3) RGB -> float -> NCHW -> /255 -> (x - mean) / std -> DRNSeg logits at
input size -> argmax -> int32 labels (N, H, W), and optionally the max softmax probability.
The normalisation is done in the same order as the authors' ToTensor + Normalize, and the
network gets a contiguous NCHW tensor as theirs does (a permuted, channels-last view would
pick other convolution kernels), so logits match theirs bit for bit on the same image and
device. Any H, W: outputs are cropped to input size after up-sampling, inside the graph.

The uint8 image is cast to float before anything else touches it, and the crop reads its
size from that float tensor: in the exported graph the uint8 input feeds one Cast and
nothing else, the only form TensorRT takes a uint8 tensor in (deploy/trt_check.py). The
cast is exact and the permute a copy, so the values are those of permuting first.
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
        """uint8 (N, H, W, 3) -> normalised contiguous float (N, 3, H, W); the cast comes first."""
        x = images.float().permute(0, 3, 1, 2).contiguous() / 255.0
        return (x - self.mean) / self.std

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits (N, C, H, W) at input size; the network itself may run in another dtype."""
        x = self.normalise(images)
        h, w = x.shape[2:]
        return self._network(x)[:, :, :h, :w]

    def _uncropped_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self._network(self.normalise(images))

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.model.seg.weight.dtype
        return self.model.uncropped(x if dtype == torch.float32 else x.to(dtype)).float()

    @staticmethod
    def decode(logits: torch.Tensor, confidence: bool):
        labels = torch.argmax(logits, dim=1).to(torch.int32)
        if not confidence:
            return labels
        return labels, torch.softmax(logits, dim=1).amax(dim=1)

    def segment(self, images: torch.Tensor, confidence: bool):
        """Labels (N, H, W) [and confidence] at input size.

        Decoded on the up-sampled map (8*ceil(H/8) x 8*ceil(W/8)), then cropped: per pixel the
        same as cropping the logits first, and in the exported graph the crop then copies
        int32 labels and one confidence plane instead of every class's logits.
        """
        x = self.normalise(images)
        h, w = x.shape[2:]  # read from the float tensor: the graph's Shape never sees uint8
        out = self.decode(self._network(x), confidence)
        if not confidence:
            return out[:, :h, :w]
        return out[0][:, :h, :w], out[1][:, :h, :w]

    def forward(self, images: torch.Tensor):
        return self.segment(images, self.confidence)
