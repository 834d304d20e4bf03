"""Moved: TensorRT engine files (metadata, names, rebuild policy) live in ``drn_perception/inference/engine_meta.py``.

Both the runtime (``inference/tensorrt_backend.py``) and the builder (``deploy/tensorrt_build.py``)
need them, and the inference room must not import deploy, so the module sits in inference/.
This name stays so existing imports keep working; edit the module there.
"""
from drn_perception.inference.engine_meta import *  # noqa: F401,F403
from drn_perception.inference.engine_meta import _DEFAULT_NAME  # noqa: F401
