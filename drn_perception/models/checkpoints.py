"""Checkpoint files: our own format, and the authors' segmentation/classification checkpoints.

Every file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists
and dicts only, never pickled code. Our format is a dict::

    {"format": "drn_perception.checkpoint/1", "info": ModelInfo.to_dict(),
     "state_dict": {...}, ...extra (training state)}

The authors' segmentation checkpoints are a bare state_dict (released models) or
``{"state_dict": ..., "arch": ...}`` saved from DataParallel (``module.`` prefix); the
architecture is recognised from the tensor names and shapes when not stated.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from drn_perception.models.drn import ARCHS, build_drn
from drn_perception.models.segmentation import DRNSeg

FORMAT = "drn_perception.checkpoint/1"
# Normalisation of the authors' Cityscapes lists (their info.json).
CITYSCAPES_MEAN = [0.290101, 0.328081, 0.286964]
CITYSCAPES_STD = [0.182954, 0.186566, 0.184475]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason."""


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely (weights_only) into a dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path} as a weights-only file: {first}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of tensors")
    return obj


def save_checkpoint(path: str | Path, model: DRNSeg, info: dict, **extra) -> Path:
    """Write our checkpoint atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "info": dict(info), "state_dict": model.state_dict(), **extra}
    # A plain new file (not mkstemp's 0600) so the result gets the usual permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _tensor_state(obj: dict, path) -> dict[str, torch.Tensor]:
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} has no state_dict of tensors")
    return strip_prefix(state)


def infer_arch(state: dict[str, torch.Tensor], prefix: str = "") -> str:
    """The DRN variant (width 1.0) whose tensor names and shapes match ``state``."""
    wanted = {k[len(prefix):]: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}
    for arch in ARCHS:
        ref = {k: tuple(v.shape) for k, v in build_drn(arch).state_dict().items() if not k.startswith(("fc.", "avgpool."))}
        if prefix:
            names = [n for n, _ in build_drn(arch).named_children()][:-2]
            ref = {_to_base(k, names): s for k, s in ref.items()}
        if all(wanted.get(k) == s for k, s in ref.items()) and len(ref) == len(
            [k for k in wanted if not k.startswith(("fc.", "avgpool."))]
        ):
            return arch
    raise CheckpointError("tensor names/shapes match no DRN variant at width 1.0: " + ", ".join(ARCHS))


def _to_base(key: str, names: list[str]) -> str:
    head, _, rest = key.partition(".")
    return f"{names.index(head)}.{rest}"


def load_checkpoint(path: str | Path, arch: str | None = None) -> tuple[DRNSeg, dict]:
    """Load a segmentation checkpoint (ours or the authors') -> (model in eval mode, info dict).

    ``info`` has ModelInfo fields (arch, width, classes, palette, mean, std); for the
    authors' checkpoints, which carry no class names, ``num_classes`` instead of classes and
    palette, and their Cityscapes normalisation.
    """
    obj = read_checkpoint(path)
    state = _tensor_state(obj, path)
    if obj.get("format") == FORMAT:
        info = dict(obj["info"])
        model = DRNSeg(info["arch"], len(info["classes"]), width=float(info.get("width", 1.0)))
    else:
        if "seg.weight" not in state or "up.weight" not in state:
            raise CheckpointError(
                f"{path} is not a segmentation checkpoint (no seg.weight/up.weight); "
                "for an ImageNet DRN checkpoint use it as --pretrained backbone initialisation"
            )
        arch = arch or (obj.get("arch") if isinstance(obj.get("arch"), str) else None) or infer_arch(state, "base.")
        n = state["seg.weight"].shape[0]
        # Class names are not stored in the authors' files: ModelInfo.from_checkpoint fills them.
        info = {"arch": arch, "width": 1.0, "num_classes": n, "mean": CITYSCAPES_MEAN, "std": CITYSCAPES_STD}
        model = DRNSeg(arch, n)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit {info['arch']}: {str(exc).splitlines()[0]}") from None
    return model.eval(), info


def load_backbone(model: DRNSeg, path: str | Path) -> None:
    """Initialise ``model.base`` from an ImageNet classification checkpoint (authors' or ours)."""
    state = _tensor_state(read_checkpoint(path), path)
    try:
        model.load_backbone_state(state)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not fit the {model.arch} backbone: {str(exc).splitlines()[0]}") from None

