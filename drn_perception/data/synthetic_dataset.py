"""A torch Dataset over the built-in synthetic street scenes (``data/synthetic.py``).

Sample ``i`` of a split is ``generate_scene(SPLIT_SEEDS[split] + i, height, width)``; the
splits' seed ranges never overlap, so validation and test scenes are never trained on.
Scenes are generated on the fly, or once into a cache: in memory, or as two ``.npy`` files
in a folder (memory-mapped by every DataLoader worker; the file name holds the split, the
count, the size and a hash of the generator's source, so a changed generator never reuses
an old cache).
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from drn_perception.data.transforms import AugmentedItems
from drn_perception.model_info import IMAGENET_MEAN, IMAGENET_STD

# First seed of each split; a split may hold at most SPLIT_STRIDE scenes.
SPLIT_STRIDE = 10_000_000
SPLIT_SEEDS = {"train": 0, "val": SPLIT_STRIDE, "test": 2 * SPLIT_STRIDE}


def split_seed(split: str, index: int) -> int:
    try:
        return SPLIT_SEEDS[split] + index
    except KeyError:
        raise ValueError(f"unknown synthetic split {split!r}; choose {', '.join(SPLIT_SEEDS)}") from None


# The scene generator's modules: a change to any of them is a new generator.
GENERATOR_MODULES = ("drn_perception.data.synthetic", "drn_perception.data.synthetic_objects")


def generator_fingerprint() -> str:
    """Short hash of the generator's source (every module of it): part of every cache file name."""
    digest = hashlib.sha256()
    for name in GENERATOR_MODULES:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()[:12]


def _generate(args):
    from drn_perception.data.synthetic import generate_scene

    seed, height, width = args
    return generate_scene(seed, height=height, width=width)


class SyntheticScenes(AugmentedItems, Dataset):
    """``num`` synthetic scenes of ``split`` at ``height`` x ``width``.

    cache: None (generate each sample when read), "memory", or a folder for .npy files.
    With a transform, sample ``i`` of epoch ``e`` is augmented with
    ``numpy.random.default_rng([seed, e, i])`` (reproducible on every worker and resume).
    """

    mean = list(IMAGENET_MEAN)
    std = list(IMAGENET_STD)

    def __init__(self, split: str = "train", num: int = 1000, height: int = 256, width: int = 512,
                 transform=None, seed: int = 0, cache: str | Path | None = None, workers: int = 0,
                 progress: bool = False):
        if not 0 < num <= SPLIT_STRIDE:
            raise ValueError(f"a synthetic split holds 1..{SPLIT_STRIDE} scenes, got {num}")
        split_seed(split, 0)
        self.split, self.num, self.height, self.width = split, int(num), int(height), int(width)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.name = f"synthetic:{split}"
        self._images = self._labels = None
        self._files = None
        self.progress = progress  # a progress bar while the scenes are generated
        if cache == "memory":
            self._images, self._labels = self._generate_all(workers)
        elif cache is not None:
            self._files = self._cache_files(Path(cache), workers)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num

    def seeds(self) -> range:
        return range(split_seed(self.split, 0), split_seed(self.split, self.num))

    def _generate_all(self, workers: int, out=None):
        images = np.empty((self.num, self.height, self.width, 3), np.uint8) if out is None else out[0]
        labels = np.empty((self.num, self.height, self.width), np.uint8) if out is None else out[1]
        jobs = [(s, self.height, self.width) for s in self.seeds()]
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"generating {self.split} scenes {self.height}x{self.width}", unit="scene",
                   disable=not self.progress, leave=False, file=sys.stderr)
        with bar:
            if workers > 1:
                with get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
                    results = pool.imap(_generate, jobs, chunksize=8)
                    for i, (rgb, lab) in enumerate(results):
                        images[i], labels[i] = rgb, lab
                        bar.update()
            else:
                for i, job in enumerate(jobs):
                    images[i], labels[i] = _generate(job)
                    bar.update()
        return images, labels

    def _cache_files(self, folder: Path, workers: int) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"synthetic_{self.split}_{self.num}_{self.height}x{self.width}_{generator_fingerprint()}"
        paths = folder / f"{stem}_images.npy", folder / f"{stem}_labels.npy"
        if all(p.is_file() for p in paths):
            return paths
        tmps = []
        try:
            for p, shape in zip(paths, [(self.num, self.height, self.width, 3), (self.num, self.height, self.width)]):
                fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=folder)
                os.close(fd)
                tmps.append(Path(tmp))
            arrays = [np.lib.format.open_memmap(t, mode="w+", dtype=np.uint8, shape=s) for t, s in
                      zip(tmps, [(self.num, self.height, self.width, 3), (self.num, self.height, self.width)])]
            self._generate_all(workers, out=arrays)
            for a in arrays:
                a.flush()
            del arrays
            for t, p in zip(tmps, paths):
                os.replace(t, p)
        finally:
            for t in tmps:
                t.unlink(missing_ok=True)
        return paths

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.num:
            raise IndexError(index)
        if self._files is not None and self._images is None:
            # Opened lazily so each DataLoader worker maps the files itself.
            self._images, self._labels = (np.load(p, mmap_mode="r") for p in self._files)
        if self._images is not None:
            return np.array(self._images[index]), np.array(self._labels[index])
        return _generate((split_seed(self.split, index), self.height, self.width))

    def __getstate__(self):
        # Workers re-open memory maps themselves instead of pickling them.
        state = dict(self.__dict__)
        if self._files is not None:
            state["_images"] = state["_labels"] = None
        return state
