"""One exported graph: parity with PyTorch, dynamic shapes, TensorRT-importable ops, metadata."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from drn_perception.data.synthetic import generate_scene
from drn_perception.deploy.export import OPSET, ExportError, export_onnx, load_model
from drn_perception.deploy.trt_check import check_model
from drn_perception.deploy.trt_rules import VERSION_NAMES
from drn_perception.inference import create_segmenter
from drn_perception.model_info import ModelInfo, sha256_file, sidecar_path
from drn_perception.models.pipeline import SegmentationPipeline


def _varied_batches():
    rng = np.random.default_rng(7)
    for n, h, w in ((1, 64, 64), (2, 128, 256), (3, 200, 304), (1, 256, 512), (2, 125, 203), (1, 97, 61)):
        scenes = np.stack([generate_scene(100 + i, h, w)[0] for i in range(n)])
        yield scenes
        yield rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)  # noise: no scene prior at all


def test_onnx_runtime_labels_equal_pytorch(tiny_onnx_model, tiny_checkpoint):
    model, info = load_model(tiny_checkpoint)
    pipeline = SegmentationPipeline(model, info.mean, info.std).eval()
    ort_seg = create_segmenter(tiny_onnx_model, "onnxruntime", "cpu")
    same = total = 0
    for batch in _varied_batches():
        with torch.no_grad():
            ref_labels, ref_conf = pipeline(torch.from_numpy(batch))
        got = ort_seg.infer(batch, want_confidence=True)
        assert got.labels.shape == batch.shape[:3] and got.labels.dtype == np.int32
        same += int((got.labels == ref_labels.numpy()).sum())
        total += got.labels.size
        np.testing.assert_allclose(got.confidence, ref_conf.numpy(), atol=1e-4)
        assert len(np.unique(got.labels)) > 1  # the check is not vacuous
    assert same / total >= 0.9999


def test_graph_is_opset17_dynamic_uint8_and_trt_importable(tiny_onnx_model):
    g = onnx.load(tiny_onnx_model)
    assert g.opset_import[0].version == OPSET
    ops = {n.op_type for n in g.graph.node}
    assert {"Conv", "ConvTranspose", "ArgMax", "Cast"} <= ops
    report = check_model(tiny_onnx_model)
    assert report.versions == VERSION_NAMES and report.ok, report.format()
    (inp,) = g.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[3] == 3 and all(isinstance(d, str) for d in dims[:3])
    outs = {o.name: o.type.tensor_type.elem_type for o in g.graph.output}
    assert outs == {"labels": onnx.TensorProto.INT32, "confidence": onnx.TensorProto.FLOAT}
    # Outputs are input-sized for any H, W: the crop to the input is inside the graph.
    for o in g.graph.output:
        assert [d.dim_param for d in o.type.tensor_type.shape.dim] == dims[:3]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tiny_onnx_model), providers=["CPUExecutionProvider"])
    for h, w in ((125, 203), (8, 8), (128, 256)):
        labels, conf = sess.run(None, {"images": np.zeros((2, h, w, 3), np.uint8)})
        assert labels.shape == conf.shape == (2, h, w)


def test_sidecar_records_model_and_hashes(tiny_onnx_model, tiny_checkpoint):
    meta = json.loads(sidecar_path(tiny_onnx_model).read_text())
    assert meta["arch"] == "drn_c_26" and len(meta["classes"]) == 19 and len(meta["palette"]) == 19
    assert meta["checkpoint_sha256"] == sha256_file(tiny_checkpoint)
    assert meta["onnx_sha256"] == sha256_file(tiny_onnx_model)
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert "size_multiple" not in meta and "multiple" not in meta["accepted_sizes"]


def test_metadata_inside_graph_serves_when_sidecar_is_missing(tiny_onnx_model, tmp_path):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(tiny_onnx_model.read_bytes())
    seg = create_segmenter(lone)
    assert seg.info == ModelInfo.read_json(sidecar_path(tiny_onnx_model))


def test_labels_only_export_and_cli(tiny_checkpoint, tmp_path):
    out = tmp_path / "labels_only.onnx"
    r = subprocess.run([sys.executable, "-m", "drn_perception.deploy.export", str(tiny_checkpoint),
                        "--out", str(out), "--no-confidence", "--meta", "held_out_miou=0.5",
                        "--meta", "note=x"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["held_out_miou"] == 0.5 and meta["note"] == "x"
    assert [o.name for o in onnx.load(out).graph.output] == ["labels"]
    seg = create_segmenter(out)
    frame = generate_scene(3, 64, 128)[0]
    res = seg.infer(frame, want_confidence=True)
    assert res.confidence is None and res.labels.shape == (1, 64, 128)


def test_cli_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "drn_perception.deploy.export", str(tmp_path / "nope.pt"),
                        "--out", str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert r.returncode == 2  # a user error: argparse's status
    assert "checkpoint not found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_export_of_larger_variant_keeps_parity(tmp_path):
    """DRN-D at another width goes through the same exporter (the check inside export_onnx)."""
    from conftest import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "d.pt", seed=3, arch="drn_d_22", width=0.125)
    out = export_onnx(ckpt, tmp_path / "d.onnx", check=True)
    assert out.is_file() and sidecar_path(out).is_file()


def test_uint8_input_feeds_one_cast_and_no_other_tensor_is_uint8(tiny_onnx_model):
    """TensorRT takes uint8 only as a network input into a Cast to float (or a network output)."""
    g = onnx.shape_inference.infer_shapes(onnx.load(tiny_onnx_model))
    users = [n for n in g.graph.node if "images" in n.input]
    assert [(n.op_type, onnx.helper.get_attribute_value(n.attribute[0])) for n in users] == \
        [("Cast", onnx.TensorProto.FLOAT)]
    uint8 = [v.name for v in g.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.UINT8]
    assert uint8 == []
    shapes = [n for n in g.graph.node if n.op_type == "Shape"]
    assert shapes and all(n.input[0] != "images" for n in shapes)  # the crop reads the float tensor's size


def test_export_refuses_a_graph_tensorrt_would_not_parse(tiny_checkpoint, tmp_path, monkeypatch):
    """The pipeline as it was (uint8 permuted before the cast, the crop's Shape on the uint8 input)."""
    from drn_perception.models import pipeline

    class PermuteFirst(pipeline.SegmentationPipeline):
        def normalise(self, images):
            x = images.permute(0, 3, 1, 2).contiguous().float() / 255.0
            return (x - self.mean) / self.std

    monkeypatch.setattr(pipeline, "SegmentationPipeline", PermuteFirst)
    out = tmp_path / "old.onnx"
    with pytest.raises(ExportError, match=r"TensorRT 8\.6, 10\.3, 10\.13-10\.16, 11 would refuse.*uint8"):
        export_onnx(tiny_checkpoint, out, check=False)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written is left
