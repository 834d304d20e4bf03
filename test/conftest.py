"""Shared test set-up: keep every DDS packet of the suite on this machine, in its own domain."""
import os
import random

# Must be set before rclpy (and so Fast DDS) is first imported by any test module.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 200)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# Fast DDS's 512 KiB shared-memory segment silently loses best-effort samples larger than it
# (a 1024x512 rgb8 frame); in LOCALHOST mode FASTDDS_BUILTIN_TRANSPORTS is ignored, so the
# suite uses the same XML profile seg.launch.py sets (measurements in docs/node.md), under the
# name this Fast DDS reads it by: FASTRTPS_ (2.x: Humble, Jazzy) or FASTDDS_ (3.x: Kilted).
from drn_perception.ros.distros import dds_profile_environment  # noqa: E402 - imports no rclpy

for _variable in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"):
    os.environ.pop(_variable, None)
os.environ.update(dds_profile_environment(os.environ, os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "fastdds_large_images.xml")))

import pytest  # noqa: E402


def make_tiny_checkpoint(path, seed=0, arch="drn_c_26", width=0.25):
    """A small random-weight DRN with varied BN statistics, so its labels are not constant."""
    import torch

    from drn_perception.model_info import ModelInfo, cityscapes
    from drn_perception.models.checkpoints import save_checkpoint
    from drn_perception.models.segmentation import DRNSeg

    torch.manual_seed(seed)
    model = DRNSeg(arch, 19, width=width).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        model.seg.bias.uniform_(-0.5, 0.5)
    cs = cityscapes()
    info = ModelInfo(arch=arch, classes=cs.classes, palette=cs.palette, width=width)
    return save_checkpoint(path, model, info.to_dict())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Our .pt checkpoint of a random-weight DRN-C-26 at width 0.25 (19 Cityscapes classes)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt")


# The robot lanes of `make test` have no torch (a robot runs exported models): there the tiny model
# is the one the main lane exported with the same code (test/export_tiny_model.py), named here.
TINY_ONNX_ENV = "DRN_TEST_TINY_ONNX"


@pytest.fixture(scope="session")
def tiny_onnx_model(request, tmp_path_factory):
    """The tiny checkpoint exported with drn-export's code (model.onnx + model.json)."""
    import shutil
    from pathlib import Path

    given = os.environ.get(TINY_ONNX_ENV)
    if given:  # a copy, so a test that writes beside it leaves the lane's file as it was
        folder = tmp_path_factory.mktemp("tiny")
        for suffix in (".onnx", ".json"):
            shutil.copy(Path(given).with_suffix(suffix), folder / f"tiny{suffix}")
        return folder / "tiny.onnx"
    from drn_perception.deploy.export import export_onnx

    checkpoint = request.getfixturevalue("tiny_checkpoint")
    return export_onnx(checkpoint, checkpoint.with_suffix(".onnx"), check=False)


@pytest.fixture(scope="session")
def segmenter(tiny_onnx_model):
    """The tiny ONNX model opened as the node opens it by default (backend auto: OpenVINO on this
    CPU where installed): what tests compare the node's output against."""
    from drn_perception.inference import create_segmenter

    return create_segmenter(tiny_onnx_model)


@pytest.fixture(scope="session")
def ort_segmenter(tiny_onnx_model):
    """The tiny ONNX model on ONNX Runtime fp32 (what serves while a TensorRT engine builds)."""
    from drn_perception.inference import create_segmenter

    return create_segmenter(tiny_onnx_model, "onnxruntime", "cpu")


@pytest.fixture(scope="module")
def context():
    """An rclpy context of its own for one test module's nodes (real DDS, this machine only)."""
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)
