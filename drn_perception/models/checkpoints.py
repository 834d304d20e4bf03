"""Checkpoint files: our own format, and the authors' segmentation/classification checkpoints.

Every file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists
and dicts only, never pickled code. Our format is a dict::

    {"format": "drn_perception.checkpoint/1", "info": ModelInfo.to_dict(),
     "state_dict": {...}, ...extra (training state)}

The authors' files (segment.py / classify.py of fyu/drn) come as a bare state_dict (released
models) or their resume dict ``{"epoch", "arch", "state_dict", "best_prec1"}`` saved from
DataParallel (``module.`` prefix); segmentation (``base.``/``seg.``/``up.``) or ImageNet
classification (``conv1``/``layer0``..``layer8``/``fc``). They were written by PyTorch < 0.4,
so they have no BatchNorm ``num_batches_tracked`` tensors: the architecture is recognised
without them, and BatchNorm fills them in on a strict load (the state is handed to
``load_state_dict`` as a plain dict, without a ``_metadata`` version, as such old files are).
A file that does not fit is reported with its missing, unexpected and wrong-shape tensors.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import torch

from drn_perception.models.drn import ARCHS, build_drn
from drn_perception.models.segmentation import DRNSeg

FORMAT = "drn_perception.checkpoint/1"
_COUNTER = "num_batches_tracked"  # BatchNorm buffer PyTorch < 0.4 did not have
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
        raise CheckpointError(_read_error(path, exc)) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of tensors")
    return obj


def _read_error(path: Path, exc: Exception) -> str:
    """One line for a file torch.load(weights_only=True) refused (torch's own text invites
    loading it with weights_only=False, which would run the code in it: not repeated here)."""
    text = str(exc)
    code = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if code:
        out = path.with_name(f"{path.stem}.weights{path.suffix or '.pth'}")
        return (
            f"checkpoint {path} holds pickled Python code ({code.group(1)}), not only tensors, and will not be "
            f"loaded. If you trust its source, convert it once and use the copy: python -c \"import torch; "
            f"o = torch.load('{path}', weights_only=False); "
            f"torch.save(o.get('state_dict', o) if isinstance(o, dict) else o.state_dict(), '{out}')\""
        )
    if "Weights only load failed" in text:  # pickle opcodes it cannot parse: not a torch file at all
        return f"cannot read checkpoint {path}: not a PyTorch checkpoint file, or a damaged one"
    first = text.strip().split(". ")[0].splitlines()[0] if text.strip() else type(exc).__name__
    return f"cannot read checkpoint {path}: {first}"


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
    """The file's tensors by name: ``module.`` stripped, as a plain dict (no ``_metadata``)."""
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} has no state_dict of tensors")
    return dict(strip_prefix(state))


@functools.lru_cache(maxsize=None)
def _backbone_shapes(arch: str, width: float = 1.0) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...]]:
    """Tensor shapes of a classification DRN without fc (built on the meta device: no weights
    are made) and the names of its children, the authors' ``base.<i>`` order."""
    with torch.device("meta"):
        model = build_drn(arch, width=width)
    shapes = {k: s for k, s in _shapes(model.state_dict()).items() if not k.startswith(("fc.", "avgpool."))}
    return shapes, tuple(n for n, _ in model.named_children())


def _shapes(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Name -> shape of the tensors under ``prefix`` (prefix removed), BatchNorm counters left out."""
    return {k[len(prefix):]: tuple(v.shape) for k, v in state.items()
            if k.startswith(prefix) and not k.endswith(_COUNTER)}


def infer_arch(state: dict[str, torch.Tensor], prefix: str = "") -> str:
    """The DRN variant (width 1.0) whose tensor names and shapes match ``state``.

    ``prefix`` "base." reads a segmentation state, "" a classification one (fc ignored);
    ``num_batches_tracked`` tensors may be present or not.
    """
    wanted = {k: s for k, s in _shapes(state, prefix).items() if not k.startswith(("fc.", "avgpool."))}
    for arch in ARCHS:
        ref, names = _backbone_shapes(arch)
        if prefix:
            ref = {_to_base(k, list(names)): s for k, s in ref.items()}
        if wanted == ref:
            return arch
    raise CheckpointError("tensor names/shapes match no DRN variant at width 1.0: " + ", ".join(ARCHS))


def fit_report(expected: dict[str, tuple[int, ...]], got: dict[str, torch.Tensor], show: int = 3) -> str:
    """Why ``got`` does not load into a module whose tensor shapes are ``expected`` (see
    ``_shapes``): counted missing, unexpected and wrong-shape tensors, the first ``show`` of
    each ("" when it fits)."""
    exp, have = expected, _shapes(got)
    missing = [k for k in exp if k not in have]
    unexpected = [k for k in have if k not in exp]
    wrong = [f"{k} {list(have[k])} vs {list(exp[k])}" for k in exp if k in have and have[k] != exp[k]]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs model)", wrong)):
        if keys:
            more = f", ... {len(keys) - show} more" if len(keys) > show else ""
            parts.append(f"{len(keys)} {what}: {', '.join(keys[:show])}{more}")
    return "; ".join(parts)


def _kind(state: dict[str, torch.Tensor]) -> str:
    if "seg.weight" in state and any(k.startswith("base.") for k in state):
        return "segmentation"
    if any(k.startswith(("conv1.", "layer0.", "layer1.")) for k in state):
        return "classification"
    return "unknown"


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
            hint = ("it is an ImageNet classification checkpoint: use it to initialise a backbone "
                    "(drn-train --pretrained)" if _kind(state) == "classification" else "no seg.weight/up.weight")
            raise CheckpointError(f"{path} is not a segmentation checkpoint: {hint}")
        arch = arch or (obj.get("arch") if isinstance(obj.get("arch"), str) else None) or infer_arch(state, "base.")
        n = state["seg.weight"].shape[0]
        # Class names are not stored in the authors' files: ModelInfo.from_checkpoint fills them.
        info = {"arch": arch, "width": 1.0, "num_classes": n, "mean": CITYSCAPES_MEAN, "std": CITYSCAPES_STD}
        model = DRNSeg(arch, n)
    problem = fit_report(_shapes(model.state_dict()), state)
    if problem:
        raise CheckpointError(f"checkpoint {path} does not fit {info['arch']}: {problem}")
    model.load_state_dict(state, strict=True)
    return model.eval(), info


def load_backbone(model: DRNSeg, path: str | Path) -> None:
    """Initialise ``model.base`` from an ImageNet classification checkpoint (the authors')."""
    obj = read_checkpoint(path)
    state = _tensor_state(obj, path)
    if obj.get("format") == FORMAT or _kind(state) == "segmentation":
        raise CheckpointError(f"{path} is a segmentation checkpoint (base/seg/up tensors), not an ImageNet one: "
                              "start from it with drn-train --init instead of --pretrained")
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "avgpool."))}
    problem = fit_report(_backbone_shapes(model.arch, model.width)[0], state)
    if problem:
        try:
            problem += f" (the file holds {infer_arch(state)})"
        except CheckpointError:
            pass
        raise CheckpointError(f"{path} does not fit the {model.arch} backbone: {problem}")
    model.load_backbone_state(state)

