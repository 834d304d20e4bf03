"""OpenVINO backend and its NNCF int8 IR, on real OpenVINO compiled models (CPU plugin)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
REPO_ROOT = Path(__file__).resolve().parent.parent

from drn_perception.data.synthetic import generate_scene  # noqa: E402
from drn_perception.inference import BackendUnavailable, create_segmenter  # noqa: E402
from drn_perception.inference.openvino_backend import OpenVinoSegmenter, resolve_precision  # noqa: E402
from drn_perception.model_info import sidecar_path  # noqa: E402


@pytest.fixture(scope="module")
def ov_int8(tiny_onnx_model, tmp_path_factory):
    """The tiny model as an NNCF int8 IR (.xml + .bin + sidecar)."""
    pytest.importorskip("nncf")
    from drn_perception.deploy.openvino_quantize import quantize_openvino_int8

    return quantize_openvino_int8(tiny_onnx_model, tmp_path_factory.mktemp("ov") / "tiny.xml",
                                  calibration_count=2, calibration_size=(32, 64))


def frames(n=2, h=64, w=96):
    return np.stack([generate_scene(40 + i, h, w)[0] for i in range(n)])


@pytest.mark.parametrize("h,w", [(64, 96), (61, 97)])
def test_f32_gives_onnxruntime_labels(tiny_onnx_model, h, w):
    """f32 is the choice whose labels equal ONNX Runtime's fp32 run of the same graph."""
    ov_seg = create_segmenter(tiny_onnx_model, backend="openvino", device="cpu", precision="f32")
    ort_seg = create_segmenter(tiny_onnx_model, backend="onnxruntime", device="cpu")
    x = frames(2, h, w)
    a, b = ov_seg.infer(x, want_confidence=True), ort_seg.infer(x, want_confidence=True)
    assert a.labels.dtype == np.int32 and a.labels.shape == (2, h, w)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert np.abs(a.confidence - b.confidence).max() < 1e-4
    # without confidence the labels-only compiled model answers, with the same labels
    np.testing.assert_array_equal(ov_seg.infer(x).labels, b.labels)
    assert ov_seg.infer(x).confidence is None
    assert ov_seg.precision == "f32" and " f32 " in ov_seg.describe()
    assert [o.get_any_name() for o in ov_seg.compiled.outputs] == ["labels"]


def test_auto_precision_is_what_the_cores_offer_and_is_reported(tiny_onnx_model):
    seg = OpenVinoSegmenter(tiny_onnx_model, device="cpu")
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert seg.precision == ("bf16" if "BF16" in caps else "f32")
    assert seg.describe().startswith(f"openvino:CPU {seg.precision} ")
    assert resolve_precision("auto", "CPU", ["FP32", "INT8"]) == "f32"
    assert resolve_precision("auto", "CPU", ["FP32", "BF16", "INT8"]) == "bf16"
    assert resolve_precision("auto", "GPU", ["FP32", "FP16"]) is None  # the device's own default
    with pytest.raises(ValueError, match="bf16 is not available .*AMX or AVX512-BF16"):
        resolve_precision("bf16", "CPU", ["FP32", "INT8"])


def test_bad_choices_are_one_clear_error(tiny_onnx_model, tmp_path, capfd):
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        create_segmenter(tiny_onnx_model, backend="openvino", precision="fp8")
    with pytest.raises(ValueError, match="OpenVINO has no CUDA"):
        create_segmenter(tiny_onnx_model, backend="openvino", device="cuda:0")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        create_segmenter(tiny_onnx_model, backend="openvino", device="tpu")
    if "NPU" not in ov.Core().available_devices:
        with pytest.raises(BackendUnavailable, match="no device NPU here"):
            create_segmenter(tiny_onnx_model, backend="openvino", device="NPU")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    capfd.readouterr()
    with pytest.raises(ValueError, match="OpenVINO cannot read") as raised:
        create_segmenter(broken, backend="openvino")
    assert "src/" not in str(raised.value), raised.value  # what went wrong, not where in OpenVINO
    printed = capfd.readouterr()  # the error is the one message: no frontend's own lines on stdout/stderr
    assert "tensorflow" not in (printed.out + printed.err).lower(), printed
    with pytest.raises(ValueError, match="loads .onnx/.xml files"):
        create_segmenter(tiny_onnx_model.with_suffix(".pt"), backend="openvino")


def test_int8_ir_quantises_the_deep_layers_only(ov_int8, tiny_onnx_model):
    from drn_perception.deploy.openvino_quantize import classifier_convolution, fine_convolutions

    model = ov.Core().read_model(str(ov_int8))
    fq_consumers = {t.get_node().get_friendly_name() for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
                    for t in op.output(0).get_target_inputs()}
    source = ov.Core().read_model(str(tiny_onnx_model))
    (head,) = classifier_convolution(source)
    fine = fine_convolutions(source, 2)
    convs = [op.get_friendly_name() for op in source.get_ordered_ops() if op.get_type_name() == "Convolution"]
    head_op = next(op for op in source.get_ordered_ops() if op.get_friendly_name() == head)
    weight = head_op.input_value(1).get_partial_shape().to_shape()
    assert list(weight)[0] == 19 and list(weight)[2:] == [1, 1]  # the 1x1 classifier: 19 logits
    assert 0 < len(fine) < len(convs) - 1
    deep = [c for c in convs if c not in fine and c != head]
    assert all(c in fq_consumers for c in deep)  # every deep convolution takes 8-bit input
    assert not (set(fine) | {head}) & fq_consumers  # stem, levels 1-2 and the classifier stay float
    meta = json.loads(sidecar_path(ov_int8).read_text())
    assert meta["quantization"]["classifier_in_float"] and meta["quantization"]["float_convolutions"][-1] == head


def test_int8_ir_loads_by_suffix_and_carries_its_metadata(ov_int8, tiny_onnx_model, tmp_path):
    import shutil

    seg = create_segmenter(ov_int8, device="cpu", precision="f32")
    assert seg.backend == "openvino" and seg.precision == "int8+f32"
    x = frames(2)
    res = seg.infer(x, want_confidence=True)
    assert res.labels.shape == (2, 64, 96) and 0 <= res.labels.min() and res.labels.max() < 19
    assert np.all((res.confidence > 0) & (res.confidence <= 1))
    fp32 = create_segmenter(tiny_onnx_model, backend="onnxruntime").infer(x).labels
    assert (res.labels == fp32).mean() > 0.5  # a working model of the same network, not noise
    # the .xml/.bin pair alone (no sidecar): metadata from the IR's rt_info
    alone = tmp_path / "alone.xml"
    shutil.copy(ov_int8, alone)
    shutil.copy(ov_int8.with_suffix(".bin"), alone.with_suffix(".bin"))
    other = create_segmenter(alone, device="cpu", precision="f32")
    assert other.info.classes == seg.info.classes
    np.testing.assert_array_equal(other.infer(x).labels, res.labels)


def test_drn_quantize_writes_an_ir_from_an_image_folder(tiny_onnx_model, tmp_path, capsys):
    import cv2

    from drn_perception.deploy.quantize import main

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), generate_scene(70 + i, 48, 80)[0][..., ::-1])
    out = tmp_path / "q.xml"
    assert main([str(tiny_onnx_model), "--out", str(out), "--calibration", str(folder),
                 "--calibration-size", "32x64", "--calibration-frames", "2"]) == 0
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["quantization"]["calibration"].startswith("2 of 3 images from folder")
    assert create_segmenter(out, precision="f32").infer(frames(1)).labels.shape == (1, 64, 96)
    capsys.readouterr()
    # mistakes: one line, exit 2, before any calibration
    bad = tmp_path / "bad.xml"
    assert main([str(tiny_onnx_model), "--out", str(bad), "--labels-only"]) == 2
    assert main([str(tiny_onnx_model), "--out", str(bad), "--calibration", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--labels-only" in err[0] and "calibration data" in err[1] and "not found" in err[1]
    assert not bad.exists()


def _child(code: str) -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_auto_rule_openvino_on_cpu_onnxruntime_for_cuda_and_without_openvino(tiny_onnx_model, tmp_path):
    """backend auto for an .onnx: OpenVINO on the CPU where installed (precision auto: bf16 on
    cores with AMX/AVX512-BF16, f32 elsewhere), ONNX Runtime for CUDA and where openvino is
    missing (a blocked import is a missing package); an .xml is OpenVINO's, a .pt torch's."""
    from drn_perception.inference.base import auto_backend
    from drn_perception.inference.openvino_backend import resolve_precision, _core

    seg = create_segmenter(tiny_onnx_model, device="cpu")
    caps = list(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    assert seg.backend == "openvino" and not seg.auto_note
    assert seg.precision == ("bf16" if resolve_precision("auto", "CPU", caps) == "bf16" else "f32"), (seg.precision, caps)
    assert seg.describe().startswith(f"openvino:CPU {seg.precision} ")
    assert auto_backend(tiny_onnx_model, "auto") == "openvino"  # no onnxruntime-gpu here
    assert auto_backend(tiny_onnx_model, "cuda:0") == "onnxruntime"
    assert auto_backend(tmp_path / "m.xml", "cpu") == "openvino" and auto_backend(tmp_path / "m.pt") == "torch"
    out = _child("import sys; sys.modules['openvino'] = None\n"
                 "from drn_perception.inference import create_segmenter\n"
                 f"print(create_segmenter({str(tiny_onnx_model)!r}, device='cpu').describe())")
    assert out.startswith("onnxruntime:cpu fp32 ")
    out = _child("import sys; sys.modules['onnxruntime'] = None\n"
                 "from drn_perception.inference import create_segmenter\n"
                 f"print(create_segmenter({str(tiny_onnx_model)!r}, device='cpu').describe())")
    assert out.startswith("openvino:CPU ")


def test_auto_falls_back_to_onnxruntime_when_openvino_cannot_compile(tiny_onnx_model):
    """An .onnx OpenVINO fails on (here: its compile made to raise) still opens with backend auto,
    on ONNX Runtime, and the segmenter says why (the node logs it); an explicit openvino fails."""
    code = ("import openvino\n"
            "def broken(*a, **k): raise RuntimeError('Unsupported operation: FancyOp')\n"
            "openvino.Core.compile_model = broken\n"
            "from drn_perception.inference import create_segmenter\n"
            f"s = create_segmenter({str(tiny_onnx_model)!r})\n"
            "print(s.describe()); print(s.auto_note)\n"
            "try:\n"
            f"    create_segmenter({str(tiny_onnx_model)!r}, 'openvino')\n"
            "except Exception as exc: print('explicit:', type(exc).__name__, exc)\n")
    describe, note, explicit = _child(code).splitlines()
    assert describe.startswith("onnxruntime:cpu fp32 ")
    assert "openvino could not open tiny.onnx" in note and "FancyOp" in note and "onnxruntime instead" in note
    assert explicit.startswith("explicit: ") and "FancyOp" in explicit


def test_static_shapes_compile_per_frame_size(tiny_onnx_model):
    """The NPU mode (one compiled model per frame size), run on the CPU: same labels as the
    dynamic-shape model, and no more than MAX_STATIC_SHAPES compiled models kept.

    Run in a child process: after this many compiled models were dropped in the pytest process,
    a later in-process torch training run (test_training) crashed with SIGSEGV inside the
    libraries (OpenVINO 2026.4 + torch 2.13 in one process); a node never trains."""
    code = f"""
import numpy as np
from drn_perception.inference.openvino_backend import MAX_STATIC_SHAPES, OpenVinoSegmenter
rng = np.random.default_rng(0)
dynamic = OpenVinoSegmenter({str(tiny_onnx_model)!r}, device="cpu", precision="f32")
static = OpenVinoSegmenter({str(tiny_onnx_model)!r}, device="cpu", precision="f32", static_shapes=True)
assert static.compiled is None and static.precision == "f32"
for h, w in [(40, 64), (48, 64), (56, 72), (64, 96), (32, 48), (40, 64)]:
    x = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    np.testing.assert_array_equal(static.infer(x).labels, dynamic.infer(x).labels)
    assert len(static._compiled) <= MAX_STATIC_SHAPES
res = static.infer(rng.integers(0, 256, (1, 40, 64, 3), dtype=np.uint8), want_confidence=True)
assert res.confidence.shape == (1, 40, 64)
assert {{k[1] for k in static._compiled}} >= {{(1, 40, 64, 3)}}
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout + res.stderr


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_phase_weights_reproduce_the_transposed_convolution(stride):
    """The phase form's weights against torch's conv_transpose2d (kernel 2*stride, padding
    stride/2, as the authors' up-sampling) on a random kernel and input: the same outputs."""
    import torch

    from drn_perception.inference.openvino_graph import phase_weights

    rng = np.random.default_rng(stride)
    kernel = rng.standard_normal((2 * stride, 2 * stride)).astype(np.float32)
    x = rng.standard_normal((1, 1, 5, 7)).astype(np.float32)
    want = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(kernel)[None, None],
                                                stride=stride, padding=stride // 2).numpy()[0, 0]
    w, before, after = phase_weights(kernel, stride, stride // 2)
    padded = np.pad(x[0, 0], ((before, after), (before, after)))
    win = w.shape[-1]
    got = np.zeros_like(want)
    for a in range(5):
        for b in range(7):
            patch = padded[a:a + win, b:b + win]
            got[a * stride:(a + 1) * stride, b * stride:(b + 1) * stride] = (w * patch).sum((1, 2)).reshape(stride, stride)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert phase_weights(kernel, stride, stride) is None  # output not stride * input: no phase form


def test_the_labels_head_in_phase_form_gives_the_graphs_labels(tiny_onnx_model):
    """The rewrite the backend compiles on CPU: in f32, labels (and confidence) identical to the
    graph as exported, at frame sizes that are and are not multiples of 8, batch 2. Under the
    bf16 hint (where the cores have it) the head itself still runs in f32; the body's bf16
    rounding then depends on the layouts the plugin picks, so labels are compared in f32 only."""
    from drn_perception.inference.openvino_graph import head_precision, rewrite_labels_head

    core = ov.Core()
    rng = np.random.default_rng(5)
    precisions = ["f32"] + (["bf16"] if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else [])
    for precision in precisions:
        config = {"INFERENCE_PRECISION_HINT": precision}
        plain = core.compile_model(core.read_model(str(tiny_onnx_model)), "CPU", config)
        model = core.read_model(str(tiny_onnx_model))
        assert rewrite_labels_head(model)
        assert not any(op.get_type_name() == "GroupConvolutionBackpropData" and
                       any(t.get_node().get_type_name() == "TopK" for t in op.output(0).get_target_inputs())
                       for op in model.get_ops())
        fast = core.compile_model(model, "CPU", config)
        assert head_precision(fast) == "f32" and head_precision(plain) is None
        if precision != "f32":
            continue
        for shape in [(2, 64, 96, 3), (1, 61, 97, 3), (1, 8, 8, 3), (1, 125, 203, 3)]:
            x = rng.integers(0, 256, shape, dtype=np.uint8)
            a, b = plain({0: x}), fast({0: x})
            np.testing.assert_array_equal(b[fast.output("labels")], a[plain.output("labels")])
            np.testing.assert_array_equal(b[fast.output("confidence")], a[plain.output("confidence")])
    seg = OpenVinoSegmenter(tiny_onnx_model, device="cpu", precision="f32")
    assert seg.labels_head == "phase"


def test_a_graph_without_the_pattern_is_left_as_it_is(tmp_path):
    """An ArgMax over an ordinary convolution (no transposed up-sampling): nothing rewritten."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from drn_perception.inference.openvino_graph import rewrite_labels_head

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"]),
                               helper.make_node("ArgMax", ["c"], ["labels"], axis=1, keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 8, 8])], [w])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    model = ov.Core().read_model(str(path))
    before = [op.get_type_name() for op in model.get_ordered_ops()]
    assert not rewrite_labels_head(model)
    assert [op.get_type_name() for op in model.get_ordered_ops()] == before


def test_on_cpu_a_frame_size_that_comes_again_gets_its_own_compiled_model(tiny_onnx_model):
    """The default on CPU: a size's first frame runs on the dynamic-shape model, its second on a
    model compiled for that size (same labels); sizes seen once never compile; at most
    MAX_STATIC_SHAPES are kept, the least recently used dropped first."""
    from drn_perception.inference.openvino_backend import MAX_STATIC_SHAPES

    seg = OpenVinoSegmenter(tiny_onnx_model, device="cpu", precision="f32")
    ref = create_segmenter(tiny_onnx_model, backend="onnxruntime")
    static = lambda: {k[1] for k in seg._compiled if k[1] is not None}  # noqa: E731
    rng = np.random.default_rng(9)
    camera = rng.integers(0, 256, (1, 61, 97, 3), dtype=np.uint8)
    for i in range(3):
        np.testing.assert_array_equal(seg.infer(camera).labels, ref.infer(camera).labels)
        assert static() == (set() if i == 0 else {camera.shape})
    for k in range(2 * MAX_STATIC_SHAPES):  # one-off sizes: no compiled model of their own
        seg.infer(rng.integers(0, 256, (1, 40 + k, 64, 3), dtype=np.uint8))
    assert static() == {camera.shape}
    others = [rng.integers(0, 256, (1, 32, 48 + 8 * k, 3), dtype=np.uint8) for k in range(MAX_STATIC_SHAPES)]
    for x in others[:-1]:
        seg.infer(x), seg.infer(x), seg.infer(camera)  # the camera stays the most recently used
    seg.infer(others[-1]), seg.infer(others[-1])
    assert len(static()) == MAX_STATIC_SHAPES and camera.shape in static() and others[0].shape not in static()


def test_large_batches_and_failed_per_size_compiles_stay_on_the_dynamic_model(tiny_onnx_model, monkeypatch):
    import drn_perception.inference.openvino_backend as backend

    seg = OpenVinoSegmenter(tiny_onnx_model, device="cpu", precision="f32")
    monkeypatch.setattr(backend, "MAX_STATIC_PIXELS", 64 * 96)
    big = np.random.default_rng(3).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    for _ in range(3):
        seg.infer(big)
    assert all(k[1] is None for k in seg._compiled)  # over the pixel cap: no model of its own
    failing = seg._compile
    monkeypatch.setattr(seg, "_compile", lambda model, shape: failing(model, shape) if shape is None else
                        (_ for _ in ()).throw(ValueError("no memory")))
    small = big[:1, :32, :48]
    want = create_segmenter(tiny_onnx_model, backend="onnxruntime").infer(small).labels
    for _ in range(3):
        np.testing.assert_array_equal(seg.infer(small).labels, want)
    assert all(k[1] is None for k in seg._compiled) and not seg.per_size


def test_per_size_models_hold_at_most_max_static_pixels_in_all(tiny_onnx_model, monkeypatch):
    import drn_perception.inference.openvino_backend as backend

    monkeypatch.setattr(backend, "MAX_STATIC_PIXELS", 2 * 64 * 96)
    seg = OpenVinoSegmenter(tiny_onnx_model, device="cpu", precision="f32")
    rng = np.random.default_rng(4)
    for shape in [(1, 64, 96, 3), (1, 40, 96, 3), (1, 64, 80, 3)]:  # 6144 + 3840 + 5120 px
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        seg.infer(x), seg.infer(x)
    sized = [k[1] for k in seg._compiled if k[1] is not None]
    assert sized == [(1, 40, 96, 3), (1, 64, 80, 3)]  # the oldest went to make room


# RSS is measured in a fresh child process: in the test process, memory freed by earlier tests'
# models blurs what a release gives back to the system.
_CHILD = """
import json, sys
import numpy as np
from drn_perception.bench.bench import current_rss
from drn_perception.data.synthetic import generate_scene
from drn_perception.inference.openvino_backend import RELEASE_AFTER_RUNS, OpenVinoSegmenter

def rss():
    return current_rss() / 2**20

def frame(h, w, seed=40):
    return generate_scene(seed, h, w)[0][None]

seg = OpenVinoSegmenter(sys.argv[1], device="cpu", static_shapes=False)  # the dynamic model alone
out = {}
"""

_BURST = """
small, big = frame(64, 96), frame(1024, 1024)
seg.infer(small)
before = rss()
want = seg.infer(big).labels
out["grown"] = rss() - before
for _ in range(3 * RELEASE_AFTER_RUNS):  # a large frame in every window: kept
    seg.infer(small), seg.infer(big)
out["releases_while_large"] = seg.memory_releases
for _ in range(RELEASE_AFTER_RUNS):
    seg.infer(small)
out["releases_after"] = seg.memory_releases
out["kept"] = rss() - before
out["same_labels"] = bool(np.array_equal(seg.infer(big).labels, want))
print(json.dumps(out))
"""

_NEW_SIZES = """
rng = np.random.default_rng(12)
seg.infer(np.zeros((1, 64, 64, 3), np.uint8))
out["rss"] = [rss()]
for count in (60, 120):
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(8, 200, 2))
        seg.infer(np.zeros((1, h, w, 3), np.uint8))
    out["rss"].append(rss())
print(json.dumps(out))
"""

SHIPPED = REPO_ROOT / "drn_perception" / "assets" / "drn_c_26_w025_synthetic.onnx"


def _measure(code: str) -> dict:
    res = subprocess.run([sys.executable, "-c", _CHILD + code, str(SHIPPED)], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_memory_of_a_burst_of_large_frames_is_given_back(tiny_onnx_model):
    """The dynamic model keeps the activation memory of the largest frame it ran; after
    RELEASE_AFTER_RUNS runs in a row at most half that size it gives it back (real RSS, the
    shipped model at 1 Mpx), while a stream that keeps sending large frames keeps it."""
    from drn_perception.inference.openvino_backend import RELEASE_AFTER_RUNS

    got = _measure(_BURST)
    assert got["grown"] > 50, got  # what the 1 Mpx frame's activations hold (~185 MiB here)
    assert got["releases_while_large"] == 0 and got["releases_after"] == 1, got
    assert got["kept"] < got["grown"] / 2, got
    assert got["same_labels"], got  # it runs as before, allocating again

    f32 = OpenVinoSegmenter(tiny_onnx_model, device="cpu", precision="f32")  # a camera on its own size's model
    f32.infer(frames(1, 256, 256))
    camera = frames(1, 64, 96)
    for _ in range(RELEASE_AFTER_RUNS + 2):
        f32.infer(camera)
    assert any(k[1] == camera.shape for k in f32._compiled) and f32.memory_releases == 1


def test_frames_of_ever_new_sizes_do_not_grow_memory_without_bound():
    """OpenVINO's CPU plugin caches kernels per input shape (5000 entries by default: 300 new
    sizes took the shipped model from 126 to 730 MiB here); capped, the cache fills within the
    first sizes and later new sizes add little (real RSS, the shipped model)."""
    rss = _measure(_NEW_SIZES)["rss"]
    first, later = rss[1] - rss[0], rss[2] - rss[1]
    assert later < max(first / 2, 30), rss  # uncapped: the later 120 sizes add more than the first 60
