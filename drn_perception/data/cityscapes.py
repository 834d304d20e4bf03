"""Readers for labelled segmentation folders: the authors' list layout and native Cityscapes.

List layout (the authors' ``segment.py``)::

    <root>/info.json              {"mean": [r, g, b], "std": [r, g, b]}  (0..1 scale)
    <root>/<split>_images.txt     one image path per line, relative to <root>
    <root>/<split>_labels.txt     one label path per line (same order); optional for test

Native Cityscapes layout (labels converted to trainIds with cityscapesscripts'
``createTrainIdLabelImgs``)::

    <root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png

Labels are single-channel 8-bit PNGs of class ids, 255 = ignore. Every listed file is checked
when the dataset is opened; an unreadable image, a label of the wrong size or kind is
reported when read, always with the file's path (``DatasetError``).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from drn_perception.data.transforms import IGNORE_LABEL, AugmentedItems

# The authors' info.json for Cityscapes (mean/std of the training images, 0..1 scale).
CITYSCAPES_MEAN = (0.290101, 0.328081, 0.286964)
CITYSCAPES_STD = (0.182954, 0.186566, 0.184475)
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used, with the path and the reason."""


def read_image(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "file not found" if not Path(path).is_file() else "not a readable image"
        raise DatasetError(f"cannot read image {path}: {reason}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """uint8 (H, W) class ids."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        reason = "file not found" if not Path(path).is_file() else "not a readable image"
        raise DatasetError(f"cannot read label {path}: {reason}")
    if label.ndim == 3 and label.shape[2] in (3, 4) and all(
            np.array_equal(label[..., 0], label[..., c]) for c in (1, 2)):
        label = label[..., 0]  # grey saved as RGB: same ids in every channel
    if label.ndim != 2:
        raise DatasetError(f"label {path} has {label.shape[2]} channels with different values; "
                           "expected a single-channel map of class ids (trainIds)")
    if label.dtype != np.uint8:
        raise DatasetError(f"label {path} is {label.dtype}; expected 8-bit class ids")
    return label


class LabelledImages(AugmentedItems, Dataset):
    """(image, label) pairs from files, optionally augmented.

    ``__getitem__`` returns uint8 (H, W, 3) RGB and uint8 (H, W) labels (all 255 when the
    split has no labels). With a transform, sample ``i`` of epoch ``e`` is augmented with
    ``numpy.random.default_rng([seed, e, i])``: the same on every run, worker and resume.
    """

    def __init__(self, images: list[Path], labels: list[Path] | None, mean, std, transform=None, seed: int = 0,
                 name: str = ""):
        if labels is not None and len(labels) != len(images):
            raise DatasetError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.name = name

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(self.images[index])
        if self.labels is None:
            return image, np.full(image.shape[:2], IGNORE_LABEL, np.uint8)
        label = read_label(self.labels[index])
        if label.shape != image.shape[:2]:
            raise DatasetError(f"label {self.labels[index]} is {label.shape[1]}x{label.shape[0]} but its image "
                               f"{self.images[index]} is {image.shape[1]}x{image.shape[0]}")
        return image, label


def read_info(root: Path) -> tuple[list[float], list[float]]:
    path = root / "info.json"
    try:
        info = json.loads(path.read_text())
        mean, std = [float(v) for v in info["mean"]], [float(v) for v in info["std"]]
    except FileNotFoundError:
        raise DatasetError(f"{path} not found: the list layout needs info.json with the images' mean and std") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f'{path} must hold {{"mean": [r, g, b], "std": [r, g, b]}}') from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DatasetError(f"{path}: mean and std need 3 values each, std > 0; got mean={mean} std={std}")
    return mean, std


def read_list(root: Path, list_file: Path) -> list[Path]:
    """Paths named one per line in ``list_file`` (relative to ``root``), each checked to exist."""
    try:
        lines = list_file.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"list file {list_file} not found") from None
    except UnicodeDecodeError:
        raise DatasetError(f"list file {list_file} is not a text file") from None
    while lines and not lines[-1].strip():
        lines.pop()
    paths = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or len(entry.split()) != 1:
            raise DatasetError(f"{list_file}:{number}: expected one file path per line, got {line!r}")
        path = root / entry
        if not path.is_file():
            raise DatasetError(f"{list_file}:{number}: file not found: {path}")
        paths.append(path)
    if not paths:
        raise DatasetError(f"list file {list_file} names no files")
    return paths


def list_dataset(root: str | Path, split: str, transform=None, seed: int = 0) -> LabelledImages:
    """The authors' list layout (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found")
    mean, std = read_info(root)
    images = read_list(root, root / f"{split}_images.txt")
    label_list = root / f"{split}_labels.txt"
    labels = read_list(root, label_list) if label_list.exists() else None
    if labels is not None and len(labels) != len(images):
        raise DatasetError(f"{label_list} names {len(labels)} files but {split}_images.txt names {len(images)}")
    return LabelledImages(images, labels, mean, std, transform, seed, name=f"{root}:{split}")


def cityscapes_dataset(root: str | Path, split: str, transform=None, seed: int = 0) -> LabelledImages:
    """The native Cityscapes layout with trainId labels (see the module docstring)."""
    root = Path(root)
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir} not found: expected the Cityscapes layout leftImg8bit/{split}/<city>/")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"no *{IMAGE_SUFFIX} files under {image_dir}/<city>/")
    labels = []
    for image in images:
        label = root / "gtFine" / split / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)
        if not label.is_file():
            raise DatasetError(f"label {label} not found for {image} (make trainId labels with cityscapesscripts' "
                               "createTrainIdLabelImgs)")
        labels.append(label)
    return LabelledImages(images, labels, CITYSCAPES_MEAN, CITYSCAPES_STD, transform, seed,
                          name=f"{root}:{split}")


def detect_layout(root: str | Path, split: str) -> str:
    """"list" or "cityscapes", from what the folder holds."""
    root = Path(root)
    if (root / f"{split}_images.txt").exists() or (root / "info.json").exists():
        return "list"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    raise DatasetError(f"{root} has neither {split}_images.txt/info.json (list layout) nor leftImg8bit/ "
                       "(Cityscapes layout)")
