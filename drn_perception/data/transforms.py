"""Joint image/label augmentation of the reference training recipe, on numpy arrays (OpenCV).

Every transform is called as ``t(image, label, rng)`` with a uint8 (H, W, 3) image, a uint8
(H, W) label map and a ``numpy.random.Generator``, and returns the new pair. Images are
resampled bilinearly, labels by nearest neighbour; pixels a transform invents are filled by
reflection in the image and with the ignore label (255) in the label map, so the loss never
learns from them. The randomness comes only from ``rng``, so a sample's augmentation is
reproducible from its seed (what makes ``drn-train --resume`` exact).

Reference recipe (the authors' Cityscapes training): random scale in [1/2, 2], random
rotation in [-10, 10] degrees, random crop (896 px for Cityscapes) with padding where the
image is smaller, random horizontal flip.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

IGNORE_LABEL = 255


def _check(image: np.ndarray, label: np.ndarray) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape[:2]} differ in size")


class AugmentedItems:
    """``__getitem__`` for datasets with ``load(index)``, ``transform``, ``seed`` and ``epoch``:
    the augmentation of item ``index`` in an epoch depends only on (seed, epoch, index), so runs
    and resumed runs see the same crops whatever the worker count."""

    def __getitem__(self, index: int):
        image, label = self.load(index)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, label = self.transform(image, label, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


class Compose:
    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, image, label, rng: np.random.Generator):
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


class RandomScale:
    """Resize by a factor drawn uniformly from [1/scale, scale] (or from a (low, high) pair)."""

    def __init__(self, scale: float | tuple[float, float]):
        if isinstance(scale, (int, float)):
            if scale < 1:
                raise ValueError(f"random scale must be >= 1 (range [1/s, s]), got {scale}")
            scale = (1.0 / scale, float(scale))
        self.low, self.high = float(scale[0]), float(scale[1])

    def __call__(self, image, label, rng):
        _check(image, label)
        ratio = rng.uniform(self.low, self.high)
        h, w = label.shape[:2]
        size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        if size == (w, h):
            return image, label
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        return image, label

    def __repr__(self) -> str:
        return f"RandomScale({self.low:.3g}, {self.high:.3g})"


class RandomRotate:
    """Rotate about the centre by an angle drawn uniformly from [-degrees, degrees]."""

    def __init__(self, degrees: float):
        self.degrees = float(degrees)

    def __call__(self, image, label, rng):
        _check(image, label)
        angle = rng.uniform(-self.degrees, self.degrees)
        if self.degrees == 0 or angle == 0:
            return image, label
        h, w = label.shape[:2]
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
        image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        label = cv2.warpAffine(label, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=IGNORE_LABEL)
        return image, label

    def __repr__(self) -> str:
        return f"RandomRotate({self.degrees:g})"


def pad_to(image: np.ndarray, label: np.ndarray, height: int, width: int):
    """Pad (split evenly on both sides) to at least height x width: image by reflection,
    label with 255."""
    h, w = label.shape[:2]
    ph, pw = max(0, height - h), max(0, width - w)
    if not (ph or pw):
        return image, label
    top, left = ph // 2, pw // 2
    # numpy's "reflect" is OpenCV's BORDER_REFLECT_101 and, unlike it, accepts pads wider
    # than the image (it reflects repeatedly).
    image = np.pad(image, ((top, ph - top), (left, pw - left), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    label = np.pad(label, ((top, ph - top), (left, pw - left)), mode="constant", constant_values=IGNORE_LABEL)
    return image, label


class RandomCrop:
    """Crop a (height, width) window at a random place, padding first where needed."""

    def __init__(self, size: int | tuple[int, int]):
        self.height, self.width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def __call__(self, image, label, rng):
        _check(image, label)
        image, label = pad_to(image, label, self.height, self.width)
        h, w = label.shape[:2]
        top = int(rng.integers(0, h - self.height + 1))
        left = int(rng.integers(0, w - self.width + 1))
        return (image[top:top + self.height, left:left + self.width],
                label[top:top + self.height, left:left + self.width])

    def __repr__(self) -> str:
        return f"RandomCrop({self.height}x{self.width})"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, image, label, rng):
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip({self.p:g})"


def training_transform(crop_size: int | tuple[int, int], random_scale: float = 2.0, random_rotate: float = 10.0,
                       hflip: bool = True) -> Compose:
    """The reference augmentation: scale -> rotate -> crop (padded) -> flip.

    ``random_scale`` <= 1 or ``random_rotate`` == 0 switch that step off.
    """
    steps = []
    if random_scale and random_scale > 1:
        steps.append(RandomScale(random_scale))
    if random_rotate:
        steps.append(RandomRotate(random_rotate))
    steps.append(RandomCrop(crop_size))
    if hflip:
        steps.append(RandomHorizontalFlip())
    return Compose(steps)
