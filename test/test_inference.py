"""Backends behind one interface: selection, any input size without padding, clear errors."""
import subprocess
import sys

import numpy as np
import pytest

from drn_perception.data.synthetic import generate_scene
from drn_perception.inference import BackendUnavailable, create_segmenter


def test_torch_and_onnxruntime_agree_through_create_segmenter(tiny_checkpoint, tiny_onnx_model):
    a = create_segmenter(tiny_checkpoint, device="cpu")
    b = create_segmenter(tiny_onnx_model, "onnxruntime", device="cpu")
    assert (a.backend, b.backend) == ("torch", "onnxruntime")
    assert a.info.classes == b.info.classes
    frames = np.stack([generate_scene(s, 96, 160)[0] for s in (1, 2)])
    ra, rb = a.infer(frames, True), b.infer(frames, True)
    assert (ra.labels == rb.labels).mean() >= 0.9999
    assert np.abs(ra.confidence - rb.confidence).max() < 1e-4


@pytest.mark.parametrize("h,w", [(61, 97), (64, 100), (8, 8), (1, 1)])
def test_odd_sizes_run_unpadded_at_input_size(tiny_onnx_model, tiny_checkpoint, h, w):
    """Every backend runs the frame at its own size, as the authors' code does: labels equal
    the torch model run directly on the unpadded frame (no padding pass, nothing to crop)."""
    import torch

    from drn_perception.deploy.export import load_model
    from drn_perception.models.pipeline import SegmentationPipeline

    frame = generate_scene(5, 128, 200)[0][:h, :w].copy()
    model, info = load_model(tiny_checkpoint)
    with torch.no_grad():
        direct = SegmentationPipeline(model, info.mean, info.std).eval().logits(torch.from_numpy(frame[None]))
    direct = direct.argmax(1).numpy()
    assert direct.shape == (1, h, w)
    seg = create_segmenter(tiny_onnx_model, "onnxruntime")
    graph = seg.session.run(["labels", "confidence"], {"images": frame[None]})
    assert graph[0].shape == graph[1].shape == (1, h, w)  # the graph itself crops
    for backend in (seg, create_segmenter(tiny_checkpoint, device="cpu")):
        res = backend.infer(frame, want_confidence=True)
        assert res.labels.shape == res.confidence.shape == (1, h, w)
        assert (res.labels == direct).mean() >= (0.9999 if h * w > 1 else 1.0), backend.backend
    assert np.array_equal(seg.infer(frame).labels, graph[0])
    if h * w > 64:
        assert len(np.unique(direct)) > 1  # not vacuous


def test_graph_exported_before_the_crop_gives_the_same_labels(tiny_checkpoint, tiny_onnx_model, tmp_path,
                                                             monkeypatch):
    """An old graph (and an engine built from one) returns the authors' whole up-sampled map,
    8*ceil(H/8) x 8*ceil(W/8): ``infer`` crops it top-left, so its labels are the new graph's."""
    from drn_perception.deploy import export
    from drn_perception.models import pipeline

    class UncroppedPipeline(pipeline.SegmentationPipeline):  # what drn-export wrote before
        def segment(self, images, confidence):
            return self.decode(self._uncropped_logits(images), confidence)

    monkeypatch.setattr(pipeline, "SegmentationPipeline", UncroppedPipeline)
    old = export.export_onnx(tiny_checkpoint, tmp_path / "old.onnx", check=False)
    monkeypatch.undo()
    old_seg, new_seg = create_segmenter(old, "onnxruntime"), create_segmenter(tiny_onnx_model, "onnxruntime")
    frames = np.stack([generate_scene(s, 128, 200)[0][:61, :97] for s in (6, 7)])
    assert old_seg.session.run(["labels"], {"images": frames})[0].shape == (2, 64, 104)
    a, b = old_seg.infer(frames, want_confidence=True), new_seg.infer(frames, want_confidence=True)
    assert a.labels.shape == a.confidence.shape == (2, 61, 97) and a.labels.flags.c_contiguous
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.confidence, b.confidence)


def test_output_of_another_shape_is_refused_not_misaligned(tiny_onnx_model):
    from drn_perception.inference.base import SegmentationResult
    from drn_perception.inference.onnxruntime_backend import OnnxRuntimeSegmenter

    class Shifted(OnnxRuntimeSegmenter):  # a graph whose output is neither input-sized nor 8*ceil
        def _run(self, images, want_confidence):
            res = super()._run(images, want_confidence)
            return SegmentationResult(np.pad(res.labels, ((0, 0), (1, 0), (0, 0))))

    seg = Shifted(tiny_onnx_model)
    with pytest.raises(ValueError, match=r"output labels has shape \(1, 62, 97\) for input \(1, 61, 97, 3\); "
                                         r"expected \(1, 61, 97\)"):
        seg.infer(np.zeros((61, 97, 3), np.uint8))


def test_bad_batches_are_refused(tiny_onnx_model):
    seg = create_segmenter(tiny_onnx_model, "onnxruntime")
    with pytest.raises(ValueError, match="uint8"):
        seg.infer(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        seg.infer(np.zeros((1, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        seg.infer(np.zeros((0, 8, 8, 3), np.uint8))


def test_selection_errors_name_the_fix(tiny_onnx_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        create_segmenter(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        create_segmenter(tiny_onnx_model, backend="tflite")
    with pytest.raises(ValueError, match="loads .engine/.plan files"):
        create_segmenter(tiny_onnx_model, backend="tensorrt")
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot tell the backend"):
        create_segmenter(odd)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="ONNX Runtime cannot load"):
        create_segmenter(broken)


def test_missing_library_is_named_when_backend_is_chosen(tiny_onnx_model):
    code = (
        "import sys; sys.modules['onnxruntime'] = sys.modules['openvino'] = None\n"
        "import drn_perception, drn_perception.inference as inf\n"
        "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules\n"
        "try:\n"
        f"    inf.create_segmenter({str(tiny_onnx_model)!r})\n"
        "except inf.BackendUnavailable as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "needs onnxruntime" in r.stdout


def test_importing_the_package_needs_no_heavy_library():
    code = ("import sys, drn_perception, drn_perception.inference, drn_perception.model_info\n"
            "heavy = {'torch', 'onnxruntime', 'tensorrt', 'rclpy'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unavailable_cuda_is_a_clear_error(tiny_onnx_model, tiny_checkpoint):
    import onnxruntime
    import torch

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
            create_segmenter(tiny_onnx_model, device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            create_segmenter(tiny_checkpoint, device="cuda")


def test_labels_only_calls_run_a_pruned_graph_with_the_same_labels(tiny_onnx_model):
    seg = create_segmenter(tiny_onnx_model, "onnxruntime", "cpu")
    assert [o.name for o in seg.labels_session.get_outputs()] == ["labels"]
    assert [o.name for o in seg.session.get_outputs()] == ["labels", "confidence"]
    frames = np.stack([generate_scene(s, 96, 128)[0] for s in (4, 5)])
    plain, with_conf = seg.infer(frames), seg.infer(frames, want_confidence=True)
    assert plain.confidence is None and with_conf.confidence is not None
    assert np.array_equal(plain.labels, with_conf.labels)
    # Idle pool threads sleep (in the node they would spin on the cores DDS and the executor need).
    for session in (seg.session, seg.labels_session):
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
