"""PyTorch backend: runs a checkpoint through the same pipeline module that is exported."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from drn_perception.inference.base import BackendUnavailable, SegmentationResult, Segmenter
from drn_perception.model_info import ModelInfo, sha256_file


class TorchSegmenter(Segmenter):
    backend = "torch"

    def __init__(self, path: str | Path, device: str = "auto", half: bool = False, channels_last: bool = False,
                 bf16: bool = False):
        from drn_perception.models.checkpoints import load_checkpoint
        from drn_perception.models.pipeline import SegmentationPipeline

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device cuda needs a CUDA build of torch and a GPU; none is available")
        try:
            self.torch_device = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r} for torch: use auto, cpu or cuda[:i]") from None
        model, info = load_checkpoint(path)
        info = ModelInfo.from_checkpoint_info(info)
        info.checkpoint_sha256 = sha256_file(path)
        super().__init__(path, info, device)
        self.pipeline = SegmentationPipeline(model, info.mean, info.std, confidence=True).eval().to(self.torch_device)
        if half:
            self.pipeline.model.half()
            self.precision = "fp16"
        elif bf16:  # bfloat16 weights and activations (oneDNN AVX512-BF16/AMX on CPU); logits back in fp32
            self.pipeline.model.to(torch.bfloat16)
            self.precision = "bf16"
        if channels_last:
            self.pipeline.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _run(self, images: np.ndarray, want_confidence: bool) -> SegmentationResult:
        x = torch.from_numpy(images).to(self.torch_device, non_blocking=True)
        out = self.pipeline.segment(x, want_confidence)
        if not want_confidence:
            return SegmentationResult(out.cpu().numpy())
        return SegmentationResult(out[0].cpu().numpy(), out[1].cpu().numpy())
