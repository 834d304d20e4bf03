"""Where the package's shipped files live (the default model)."""
from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "drn_c_26_w025_synthetic.onnx"


def assets_dir() -> Path:
    """drn_perception/assets/ (installed as package data next to the code)."""
    return Path(__file__).resolve().parent / "assets"


def default_model_path() -> Path:
    """The model seg_node and the tools use when none is given (may not exist yet)."""
    return assets_dir() / DEFAULT_MODEL_NAME
