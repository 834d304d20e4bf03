"""Readers for labelled segmentation folders: the authors' list layout and native Cityscapes.

List layout (the authors' ``segment.py``)::

    <root>/info.json              {"mean": [r, g, b], "std": [r, g, b]}  (0..1 scale)
    <root>/<split>_images.txt     one image path per line, relative to <root>
    <root>/<split>_labels.txt     one label path per line (same order); optional for test

Native Cityscapes layout::

    <root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png   (cityscapesscripts' createTrainIdLabelImgs)
    <root>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png        (as in gtFine_trainvaltest.zip)

Labels are single-channel 8-bit PNGs of class ids, 255 = ignore. They are trainIds, or the
native Cityscapes label ids (``labelIds``: 0..33), which are read through the official
id -> trainId table (cityscapesScripts' ``helpers/labels.py``) into the same trainIds
``createTrainIdLabelImgs`` writes. Which one is chosen by ``labels``: ``auto`` reads files named
``*_labelIds.png`` as labelIds and every other file as trainIds (in the Cityscapes layout the
``_labelTrainIds`` files where they exist, else the ``_labelIds`` ones).

Every listed file is checked to exist when the dataset is opened; with ``num_classes`` given,
the values of a sample of the label files are checked then too, and every label is checked
again when it is read, before any augmentation: a raw labelIds file read as trainIds (ids up to
33) stops the run with one line naming the file and the fix, never a loss that fails on it or
trains on wrong classes. An unreadable image, a label of the wrong size or kind is reported when
read, always with the file's path (``DatasetError``).
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
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
LABEL_KINDS = ("auto", "trainIds", "labelIds")

# The official Cityscapes label id -> trainId table (cityscapesScripts, helpers/labels.py):
# the 19 evaluated classes; every other id 0..33 (void, parking, rail track, guard rail,
# bridge, tunnel, polegroup, caravan, trailer) is trainId 255, ignored. License plates
# (id -1) are never drawn into label images.
CITYSCAPES_LABEL_IDS = 34  # ids 0..33
CITYSCAPES_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                       25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# How many label files are read when a dataset opens, to catch labelIds given as trainIds before training.
SAMPLE_FILES = 8


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used, with the path and the reason."""


def worker_error(exc: DatasetError) -> DatasetError:
    """The error as a DataLoader worker raised it: torch re-raises a worker's exception in the main
    process by its type, the message prefixed with the worker's traceback; keep the last line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and "DataLoader worker" in lines[0]:
        _, found, message = lines[-1].partition(f"{DatasetError.__name__}: ")
        if found:
            return DatasetError(message)
    return exc


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


def _train_id_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_LABEL, np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


TRAIN_ID_LUT = _train_id_lut()


def label_ids_to_train_ids(label: np.ndarray, path: str | Path = "") -> np.ndarray:
    """Cityscapes label ids (0..33) -> trainIds through the official table; DatasetError for other values."""
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    bad = present[present >= CITYSCAPES_LABEL_IDS]
    if bad.size:
        raise DatasetError(f"label {path} was read as Cityscapes labelIds (0..{CITYSCAPES_LABEL_IDS - 1}) but holds "
                           f"{_values(bad)}: if it holds trainIds, pass --labels trainIds")
    return TRAIN_ID_LUT[label]


def _values(values) -> str:
    values = [int(v) for v in values]
    return ", ".join(map(str, values[:8])) + (f", ... ({len(values)} values)" if len(values) > 8 else "")


def check_label_values(label: np.ndarray, num_classes: int, path: str | Path = "", kind: str = "trainIds") -> None:
    """DatasetError naming the file and the fix when ``label`` holds ids other than 0..num_classes-1 and 255."""
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    bad = present[(present >= num_classes) & (present != IGNORE_LABEL)]
    if not bad.size:
        return
    if kind == "labelIds":
        raise DatasetError(f"label {path}, read as Cityscapes labelIds, gives trainIds {_values(bad)} outside "
                           f"0..{num_classes - 1}: the class config has {num_classes} classes, Cityscapes 19")
    raise DatasetError(f"label {path} holds ids {_values(bad)} outside 0..{num_classes - 1} (255 = ignore): raw "
                       "Cityscapes labelIds? Make trainIds with cityscapesscripts' createTrainIdLabelImgs, or read "
                       "them as they are with --labels labelIds")


def label_kind(labels: list[Path], requested: str) -> str:
    """"trainIds" or "labelIds" for these label files: ``requested`` unless it is "auto", then
    labelIds when every file is named like Cityscapes' ``*_labelIds.png``."""
    if requested not in LABEL_KINDS:
        raise DatasetError(f"unknown label kind {requested!r}: choose {', '.join(LABEL_KINDS)}")
    if requested != "auto":
        return requested
    return "labelIds" if labels and all(p.name.endswith("_labelIds.png") for p in labels) else "trainIds"


class LabelledImages(AugmentedItems, Dataset):
    """(image, label) pairs from files, optionally augmented.

    ``__getitem__`` returns uint8 (H, W, 3) RGB and uint8 (H, W) labels (all 255 when the
    split has no labels). With a transform, sample ``i`` of epoch ``e`` is augmented with
    ``numpy.random.default_rng([seed, e, i])``: the same on every run, worker and resume.
    """

    def __init__(self, images: list[Path], labels: list[Path] | None, mean, std, transform=None, seed: int = 0,
                 name: str = "", labels_kind: str = "trainIds", num_classes: int | None = None):
        if labels is not None and len(labels) != len(images):
            raise DatasetError(f"{name}: {len(images)} images but {len(labels)} labels")
        if labels_kind not in ("trainIds", "labelIds"):
            raise DatasetError(f"unknown label kind {labels_kind!r}: trainIds or labelIds")
        self.images = images
        self.labels = labels
        self.labels_kind = labels_kind  # labelIds: read through the official id -> trainId table
        self.num_classes = num_classes  # None: label values are not checked
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

    def read_label(self, index: int) -> np.ndarray:
        """Label ``index`` as trainIds (labelIds mapped), its values checked when num_classes is set."""
        path = self.labels[index]
        label = read_label(path)
        if self.labels_kind == "labelIds":
            label = label_ids_to_train_ids(label, path)
        if self.num_classes is not None:
            check_label_values(label, self.num_classes, path, self.labels_kind)
        return label

    def check_sample(self, count: int = SAMPLE_FILES) -> None:
        """Read ``count`` label files spread over the list and check their values (DatasetError)."""
        if self.labels is None or self.num_classes is None:
            return
        for index in sorted(set(np.linspace(0, len(self.labels) - 1, min(count, len(self.labels))).round().astype(int))):
            self.read_label(int(index))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(self.images[index])
        if self.labels is None:
            return image, np.full(image.shape[:2], IGNORE_LABEL, np.uint8)
        label = self.read_label(index)
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


def list_dataset(root: str | Path, split: str, transform=None, seed: int = 0, labels: str = "auto",
                 num_classes: int | None = None) -> LabelledImages:
    """The authors' list layout (see the module docstring). ``labels``: auto, trainIds or
    labelIds; ``num_classes``: check label values (a sample now, every label when read)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} not found")
    mean, std = read_info(root)
    images = read_list(root, root / f"{split}_images.txt")
    label_list = root / f"{split}_labels.txt"
    label_files = read_list(root, label_list) if label_list.exists() else None
    if label_files is not None and len(label_files) != len(images):
        raise DatasetError(f"{label_list} names {len(label_files)} files but {split}_images.txt names {len(images)}")
    dataset = LabelledImages(images, label_files, mean, std, transform, seed, name=f"{root}:{split}",
                             labels_kind=label_kind(label_files or [], labels), num_classes=num_classes)
    dataset.check_sample()
    return dataset


def cityscapes_dataset(root: str | Path, split: str, transform=None, seed: int = 0, labels: str = "auto",
                       num_classes: int | None = None) -> LabelledImages:
    """The native Cityscapes layout (see the module docstring): ``labels`` auto takes the
    ``_labelTrainIds`` files where the first image has one, else the ``_labelIds`` files."""
    root = Path(root)
    if labels not in LABEL_KINDS:
        raise DatasetError(f"unknown label kind {labels!r}: choose {', '.join(LABEL_KINDS)}")
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir} not found: expected the Cityscapes layout leftImg8bit/{split}/<city>/")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"no *{IMAGE_SUFFIX} files under {image_dir}/<city>/")

    def label_path(image: Path, suffix: str) -> Path:
        return root / "gtFine" / split / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + suffix)

    kind = labels
    if kind == "auto":
        kind = "labelIds" if (not label_path(images[0], LABEL_SUFFIX).is_file()
                              and label_path(images[0], LABEL_IDS_SUFFIX).is_file()) else "trainIds"
    suffix = LABEL_IDS_SUFFIX if kind == "labelIds" else LABEL_SUFFIX
    label_files = []
    for image in images:
        label = label_path(image, suffix)
        if not label.is_file():
            fix = ("the gtFine archive has them" if kind == "labelIds" else
                   "make trainId labels with cityscapesscripts' createTrainIdLabelImgs, or read the "
                   f"*{LABEL_IDS_SUFFIX} files with --labels labelIds")
            raise DatasetError(f"label {label} not found for {image} ({fix})")
        label_files.append(label)
    dataset = LabelledImages(images, label_files, CITYSCAPES_MEAN, CITYSCAPES_STD, transform, seed,
                             name=f"{root}:{split}", labels_kind=kind, num_classes=num_classes)
    dataset.check_sample()
    return dataset


def detect_layout(root: str | Path, split: str) -> str:
    """"list" or "cityscapes", from what the folder holds."""
    root = Path(root)
    if (root / f"{split}_images.txt").exists() or (root / "info.json").exists():
        return "list"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    raise DatasetError(f"{root} has neither {split}_images.txt/info.json (list layout) nor leftImg8bit/ "
                       "(Cityscapes layout)")
