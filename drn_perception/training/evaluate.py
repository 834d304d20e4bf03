"""drn-eval: mIoU of a checkpoint (.pt), ONNX model (.onnx) or TensorRT engine on a split.

The confusion matrix is counted over the whole split (label 255 ignored) and printed as a
per-class IoU table. For synthetic scenes the mean is taken over the classes the generator
emits; for other datasets over every class that occurs or is predicted.

Multi-scale (``--scales 0.75 1 1.25``): each image is resized by every factor and run.
- With a PyTorch checkpoint the class probabilities (softmax of the logits) are resized
  back to the image size (bilinear) and averaged, as the authors' multi-scale test does.
- ONNX models and engines output labels (and a per-pixel confidence), not logits, so their
  multi-scale result is a vote: each scale's labels are resized back (nearest) and each pixel
  takes the class with the largest summed confidence (plain count when the model has no
  confidence output). This is close to, but not the same as, probability averaging; use the
  .pt checkpoint for the reference multi-scale number.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from drn_perception import cli
from drn_perception.cli import UserError
from drn_perception.training.datasets import add_dataset_args, build_dataset, eval_classes, resolve_dataset_kind

# Scenes of this size when the model records no training size (drn-train's own default).
FALLBACK_SYNTHETIC_SIZE = (256, 512)


def build_parser() -> cli.Parser:
    from drn_perception.inference import BACKENDS

    p = cli.Parser(prog="drn-eval", description=__doc__.split("\n\n")[0], formatter_class=cli.DefaultsFormatter)
    p.add_argument("model", type=Path, help="checkpoint .pt, ONNX model .onnx or TensorRT .engine")
    add_dataset_args(p, train=False)
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales (several: multi-scale)")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="auto: by file type")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:I")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images (default: all)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def trained_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of the synthetic scenes the model was trained on, where the file records it: our
    checkpoints keep drn-train's arguments; drn-export copies the size into the sidecar."""
    import json as _json

    from drn_perception.model_info import sidecar_path

    size = None
    if path.suffix.lower() in (".pt", ".pth"):
        from drn_perception.models.checkpoints import read_checkpoint

        args = read_checkpoint(path).get("args") or {}
        if args.get("dataset") in (None, "synthetic") and not args.get("data_dir"):
            size = args.get("synthetic_size")
    elif sidecar_path(path).is_file():
        try:
            size = _json.loads(sidecar_path(path).read_text()).get("trained_synthetic_size")
        except ValueError:
            size = None
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v >= 8 for v in size):
        return int(size[0]), int(size[1])
    return None


def check_args(args) -> None:
    """Checks that need neither the model nor the data."""
    if not args.model.is_file():
        raise UserError(f"model file not found: {args.model}")
    if any(s <= 0 for s in args.scales):
        raise UserError(f"--scales must be positive, got {' '.join(f'{s:g}' for s in args.scales)}")
    if args.synthetic_num < 1 or (args.limit is not None and args.limit < 1):
        raise UserError("--synthetic-num and --limit must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"--data-dir {args.data_dir}: no such folder")
    if args.dataset not in (None, "synthetic") and args.data_dir is None:
        raise UserError(f"--dataset {args.dataset} needs --data-dir")
    if args.classes is not None and not args.classes.is_file():
        raise UserError(f"--classes {args.classes}: file not found")


def resize(array: np.ndarray, height: int, width: int, nearest: bool) -> np.ndarray:
    import cv2

    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(8, round(h * scale)), max(8, round(w * scale))


class TorchPredictor:
    """A checkpoint in PyTorch: probabilities averaged over scales."""

    def __init__(self, path: Path, device: str):
        import torch

        from drn_perception.deploy.export import load_model

        model, self.info = load_model(path)
        dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.device = torch.device(dev)
        self.model = model.to(self.device).eval()
        self.mean = torch.tensor(self.info.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.info.std, device=self.device).view(1, 3, 1, 1)
        self.describe = f"torch:{self.device} {self.info.arch} width {self.info.width}"

    def __call__(self, image: np.ndarray, scales) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from drn_perception.training.train import normalise

        h, w = image.shape[:2]
        prob = None
        with torch.no_grad():
            for s in scales:
                x = torch.from_numpy(np.ascontiguousarray(resize(image, *scaled_size(h, w, s), nearest=False)))
                # At the frame's own size, as the authors' code and every backend: DRNSeg crops to it.
                logits = self.model(normalise(x[None].to(self.device), self.mean, self.std))
                if logits.shape[-2:] != (h, w):
                    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
                p = torch.softmax(logits.float(), dim=1)
                prob = p if prob is None else prob + p
        return prob.argmax(1)[0].cpu().numpy()


class SegmenterPredictor:
    """An ONNX model or engine through create_segmenter: confidence-weighted vote over scales."""

    def __init__(self, path: Path, backend: str, device: str):
        from drn_perception.inference import create_segmenter

        self.segmenter = create_segmenter(path, backend=backend, device=device)
        self.info = self.segmenter.info
        self.describe = self.segmenter.describe()

    def __call__(self, image: np.ndarray, scales) -> np.ndarray:
        h, w = image.shape[:2]
        if len(scales) == 1 and scales[0] == 1.0:
            return self.segmenter.infer(image[None]).labels[0]
        votes = np.zeros((self.info.num_classes, h, w), np.float32)
        rows, cols = np.indices((h, w))
        for s in scales:
            res = self.segmenter.infer(resize(image, *scaled_size(h, w, s), nearest=False)[None], want_confidence=True)
            labels = resize(res.labels[0], h, w, nearest=True)
            weight = np.ones((h, w), np.float32) if res.confidence is None else \
                resize(res.confidence[0], h, w, nearest=True)
            np.add.at(votes, (labels, rows, cols), weight)
        return votes.argmax(0)


def open_model(path: Path, backend: str, device: str):
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    if path.suffix.lower() in (".pt", ".pth") and backend in ("auto", "torch"):
        return TorchPredictor(path, device)
    return SegmenterPredictor(path, backend, device)


def evaluate(args) -> dict:
    from tqdm import tqdm

    from drn_perception.training.metrics import ConfusionMatrix, format_table

    check_args(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    kind = resolve_dataset_kind(args)
    size_from = "given"
    if args.synthetic_size is None:
        recorded = trained_size(args.model)
        args.synthetic_size = recorded or FALLBACK_SYNTHETIC_SIZE
        size_from = "the size the model was trained at" if recorded else "drn-train's default size"
    predictor = open_model(args.model, args.backend, args.device)
    info = predictor.info
    dataset = build_dataset(args, kind, args.split, None, args.synthetic_num, num_classes=info.num_classes)
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    classes = eval_classes(kind, info.num_classes)
    conf = ConfusionMatrix(info.num_classes)
    t0 = time.time()
    for i in tqdm(range(n), desc="drn-eval", disable=args.no_progress, mininterval=1 if sys.stderr.isatty() else 30):
        image, label = dataset[i]
        pred = predictor(image, args.scales)
        try:
            conf.update(pred, label)
        except ValueError as exc:
            where = getattr(dataset, "labels", None)
            name = where[i] if where else f"sample {i} of {getattr(dataset, 'name', 'the dataset')}"
            raise UserError(f"{name}: {exc} (model has {info.num_classes} classes)") from None
    seconds = time.time() - t0
    iou = conf.iou()
    ids = classes if classes is not None else list(range(info.num_classes))
    return {
        "model": str(args.model), "backend": predictor.describe, "dataset": kind, "split": args.split,
        "images": n, "synthetic_size": list(args.synthetic_size) if kind == "synthetic" else None,
        "synthetic_size_from": size_from if kind == "synthetic" else None, "scales": list(args.scales), "miou": conf.miou(classes), "pixel_accuracy": conf.pixel_accuracy(),
        "miou_classes": [info.classes[c] for c in ids],
        "per_class_iou": {info.classes[c]: (None if np.isnan(iou[c]) else float(iou[c])) for c in ids},
        "seconds": seconds, "table": format_table(conf.matrix, info.classes, classes),
        "confusion": conf.matrix.tolist(),
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from drn_perception.data.cityscapes import DatasetError
    from drn_perception.inference import BackendUnavailable
    from drn_perception.models.checkpoints import CheckpointError

    try:
        result = evaluate(args)
    except (UserError, DatasetError, CheckpointError, BackendUnavailable, FileNotFoundError, ValueError) as exc:
        return cli.fail("drn-eval", exc)
    where = ""
    if result["synthetic_size"]:
        where = f" {result['synthetic_size'][0]}x{result['synthetic_size'][1]} ({result['synthetic_size_from']})"
    print(f"{result['backend']} on {result['dataset']}:{result['split']}{where} ({result['images']} images, "
          f"scales {' '.join(f'{s:g}' for s in result['scales'])}, {result['seconds']:.1f} s)")
    print(result["table"])
    print(f"mIoU {result['miou']:.4f}  pixel accuracy {result['pixel_accuracy']:.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
