"""What a model file carries besides its weights: architecture, classes, palette, normalisation.

The same record travels in our checkpoints (.pt), the ONNX sidecar (model.json) and the
TensorRT engine metadata, so every backend can tell the node what its labels mean.
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

# ImageNet statistics, the authors' default for Cityscapes training (info.json of their lists).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_LABEL = 255
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


@dataclass
class ClassConfig:
    """Class names and RGB colours indexed by label id."""

    name: str
    classes: list[str]
    palette: list[list[int]]

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ClassConfig":
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read class config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"class config {path} is not valid YAML: {exc}") from None
        try:
            entries = sorted(doc["classes"], key=lambda e: int(e["id"]))
            ids = [int(e["id"]) for e in entries]
            if ids != list(range(len(ids))):
                raise ValueError(f"class ids must be 0..N-1 without gaps, got {ids}")
            names = [str(e["name"]) for e in entries]
            palette = [[int(c) for c in e["color"]] for e in entries]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"class config {path} needs a 'classes' list of {{id, name, color}}: {exc}"
            ) from None
        return cls(name=str(doc.get("name", path.stem)), classes=names, palette=palette)


def cityscapes() -> ClassConfig:
    """The Cityscapes trainId classes shipped in config/cityscapes.yaml."""
    return ClassConfig.from_yaml(_config_path("cityscapes.yaml"))


def _config_path(name: str) -> Path:
    """config/<name>: source checkout or editable install, else share/drn_perception/config of a
    pip install (sys.prefix), else of a colcon install (ament index)."""
    for candidate in (CONFIG_DIR / name, Path(sys.prefix) / "share" / "drn_perception" / "config" / name):
        if candidate.exists():
            return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("drn_perception")) / "config" / name
    except Exception:  # noqa: BLE001 - ament index absent or package not installed there
        return CONFIG_DIR / name


@dataclass
class ModelInfo:
    """Everything needed to interpret a model's input and output."""

    arch: str
    classes: list[str]
    palette: list[list[int]]
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    width: float = 1.0
    checkpoint_sha256: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_checkpoint_info(cls, d: dict) -> "ModelInfo":
        """Complete a checkpoint's info; the authors' files carry only ``num_classes``, so
        19 classes become the Cityscapes trainIds and other counts get generic names."""
        if "classes" not in d:
            n = int(d["num_classes"])
            cs = cityscapes()
            if n == len(cs.classes):
                d = {**d, "classes": cs.classes, "palette": cs.palette}
            else:
                rng = random.Random(n)
                d = {**d, "classes": [f"class_{i}" for i in range(n)],
                     "palette": [[rng.randrange(256) for _ in range(3)] for _ in range(n)]}
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelInfo":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        missing = {"arch", "classes", "palette"} - known.keys()
        if missing:
            raise ValueError(f"model metadata lacks {sorted(missing)}")
        known["classes"] = [str(c) for c in known["classes"]]
        known["palette"] = [[int(v) for v in c] for c in known["palette"]]
        known["mean"] = [float(v) for v in known.get("mean", IMAGENET_MEAN)]
        known["std"] = [float(v) for v in known.get("std", IMAGENET_STD)]
        return cls(**known)

    def write_json(self, path: str | Path, **extra) -> None:
        Path(path).write_text(json.dumps({**self.to_dict(), **extra}, indent=2) + "\n")

    @classmethod
    def read_json(cls, path: str | Path) -> "ModelInfo":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except OSError as exc:
            raise ValueError(f"cannot read model metadata {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"model metadata {path} is not valid JSON: {exc}") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sidecar_path(model_path: str | Path) -> Path:
    """model.onnx -> model.json (also for .engine)."""
    return Path(model_path).with_suffix(".json")
