"""Segmentation metrics: confusion matrix, per-class IoU, mean IoU (numpy; label 255 ignored).

The confusion matrix is counted over a whole split (not averaged per image), as in the
Cityscapes benchmark: ``conf[t, p]`` is the number of pixels of true class ``t`` predicted as
``p``. IoU of class c = TP / (TP + FP + FN); a class that appears neither in the ground truth
nor in the predictions has no IoU (NaN) and is left out of the mean.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IGNORE_LABEL = 255


def confusion_matrix(pred, target, num_classes: int, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """int64 (num_classes, num_classes) counts over the pixels where ``target != ignore_label``.

    Target labels other than the ignore label must lie in 0..num_classes-1; predictions out
    of that range are an error too (they would silently vanish otherwise).
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {target.shape}")
    keep = target != ignore_label
    t = target[keep].astype(np.int64, copy=False)
    p = pred[keep].astype(np.int64, copy=False)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        bad = sorted(set(np.unique(t[(t < 0) | (t >= num_classes)]).tolist()))
        raise ValueError(f"labels {bad} are outside 0..{num_classes - 1} (and not the ignore label {ignore_label})")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predictions outside 0..{num_classes - 1}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """float64 (C,) IoU per class; NaN where the class is in neither labels nor predictions."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(conf: np.ndarray, classes: Sequence[int] | None = None) -> float:
    """Mean of the per-class IoUs over ``classes`` (default: every class with an IoU).

    With ``classes`` given, a listed class that never occurs and is never predicted counts
    as NaN and is skipped; one that is predicted but never occurs counts as 0.
    """
    iou = per_class_iou(conf)
    if classes is not None:
        iou = iou[np.asarray(list(classes), dtype=np.int64)]
    valid = ~np.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    conf = np.asarray(conf)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


class ConfusionMatrix:
    """Accumulates a confusion matrix over many (prediction, label) pairs."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, target) -> None:
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_label)

    def iou(self) -> np.ndarray:
        return per_class_iou(self.matrix)

    def miou(self, classes: Sequence[int] | None = None) -> float:
        return mean_iou(self.matrix, classes)

    def pixel_accuracy(self) -> float:
        return pixel_accuracy(self.matrix)


def format_table(conf: np.ndarray, names: Sequence[str], classes: Sequence[int] | None = None) -> str:
    """Markdown table: one row per class (id, name, IoU, ground-truth pixel share), then mIoU."""
    iou = per_class_iou(conf)
    gt = np.asarray(conf).sum(1)
    total = max(int(gt.sum()), 1)
    ids = list(range(len(iou))) if classes is None else list(classes)
    rows = ["| id | class | IoU | pixels |", "|---:|:------|----:|-------:|"]
    for c in ids:
        value = "n/a" if np.isnan(iou[c]) else f"{iou[c]:.4f}"
        rows.append(f"| {c} | {names[c] if c < len(names) else c} | {value} | {100.0 * gt[c] / total:.2f}% |")
    rows.append(f"| | **mIoU ({sum(~np.isnan(iou[ids]))} classes)** | **{mean_iou(conf, ids):.4f}** | |")
    return "\n".join(rows)
