"""The graphs drn-quantize --target tensorrt writes with NVIDIA ModelOpt: real ModelOpt, real ONNX
Runtime sessions and the TensorRT parser rules (deploy/trt_check.py) on the tiny model."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

pytest.importorskip("modelopt.onnx.quantization")

from drn_perception.data.synthetic import generate_scene  # noqa: E402
from drn_perception.deploy import tensorrt_graphs as tg  # noqa: E402
from drn_perception.deploy.calibration import calibration_frames  # noqa: E402
from drn_perception.deploy.graph_files import classifier_layers  # noqa: E402
from drn_perception.deploy.trt_check import check_model  # noqa: E402

SIZE = (64, 128)
DEPLOY = Path(__file__).resolve().parents[1] / "drn_perception" / "deploy"


def scenes(n, seed0=0):
    return [generate_scene(seed0 + i, *SIZE)[0][None] for i in range(n)]


def io_types(model):
    return ({i.name: i.type.tensor_type.elem_type for i in model.graph.input},
            {o.name: o.type.tensor_type.elem_type for o in model.graph.output})


@pytest.fixture(scope="module")
def input_sha256(tiny_onnx_model):
    """The input model's bytes before ModelOpt sees it (its loader writes shape inference back
    into the path it is given)."""
    from drn_perception.model_info import sha256_file

    return sha256_file(tiny_onnx_model)


@pytest.fixture(scope="module")
def fp16_graph(tiny_onnx_model, tmp_path_factory, input_sha256):
    out = tmp_path_factory.mktemp("trt") / "tiny.fp16.onnx"
    return tg.write_fp16(tiny_onnx_model, out, list(calibration_frames(2, SIZE)))


@pytest.fixture(scope="module")
def int8_graphs(tiny_onnx_model, tmp_path_factory, input_sha256):
    folder = tmp_path_factory.mktemp("trt")
    frames = list(calibration_frames(4, SIZE))
    return {hp: tg.write_int8_qdq(tiny_onnx_model, folder / f"tiny.int8-{hp}.onnx", frames, high_precision=hp)
            for hp in tg.HIGH_PRECISIONS}


def test_fp16_graph_is_typed_fp16_with_the_exported_interface(tiny_onnx_model, fp16_graph):
    model = onnx.load(str(fp16_graph))
    assert io_types(model) == io_types(onnx.load(str(tiny_onnx_model)))
    assert io_types(model)[0] == {"images": TensorProto.UINT8}
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert conv_weights and all(types[w] == TensorProto.FLOAT16 for w in conv_weights)
    # the ops chosen to stay fp32 compute on fp32 tensors
    inferred = onnx.shape_inference.infer_shapes(model)
    elem = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert elem[softmax.output[0]] == TensorProto.FLOAT
    record = json.loads(fp16_graph.with_suffix(".json").read_text())["tensorrt_graph"]
    assert record["precision"] == "fp16" and "Softmax" in record["fp32_op_types"]
    agree, count = tg.label_agreement(tiny_onnx_model, fp16_graph, scenes(3))
    assert count == 3 and agree >= 0.99


def test_fp16_graph_passes_the_parser_check_for_strongly_typed_versions(fp16_graph):
    report = check_model(fp16_graph)
    assert report.ok, report.format()


def test_int8_graph_is_symmetric_qdq_with_float_stem_and_classifier(tiny_onnx_model, int8_graphs):
    model = onnx.load(str(int8_graphs["fp16"]))
    assert io_types(model) == io_types(onnx.load(str(tiny_onnx_model)))
    inits = {t.name: t for t in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quant
    for node in quant:  # TensorRT's explicit quantization: int8, zero point 0
        assert len(node.input) == 3, node.name
        zero = numpy_helper.to_array(inits[node.input[2]])
        assert zero.dtype == np.int8 and not zero.any(), node.name
    produced_by = {o: n for n in model.graph.node for o in n.output}
    classifier = next(n for n in model.graph.node if n.name == classifier_layers(tiny_onnx_model)[0])
    assert all(produced_by.get(i) is None or produced_by[i].op_type != "DequantizeLinear" for i in classifier.input)
    quantized_convs = [n for n in model.graph.node if n.op_type == "Conv"
                       and produced_by.get(n.input[0]) is not None and produced_by[n.input[0]].op_type == "DequantizeLinear"]
    assert len(quantized_convs) >= 10
    agree, _ = tg.label_agreement(tiny_onnx_model, int8_graphs["fp16"], scenes(3))
    assert agree >= 0.9  # random weights; the trained models' numbers are in benchmarks/README.md


def test_int8_float_precision_decides_which_tensorrt_versions_parse_it(int8_graphs):
    fp16_rest, fp32_rest = (check_model(int8_graphs[hp]) for hp in ("fp16", "fp32"))
    assert not fp16_rest.accepted("8.6")  # fp16 Q/DQ scales: 8.6 reads fp32 scales only
    assert all(fp16_rest.accepted(v) for v in ("10.3", "10.16", "11"))
    assert fp32_rest.ok, fp32_rest.format()
    assert max(o.version for o in onnx.load(str(int8_graphs["fp32"])).opset_import if o.domain == "") == tg.TRT86_OPSET
    record = json.loads(int8_graphs["fp32"].with_suffix(".json").read_text())["tensorrt_graph"]
    assert record["float_precision"] == "fp32" and record["weights"] == "int8 per-channel symmetric"


def test_writer_refuses_bad_arguments_before_modelopt(tiny_onnx_model, tmp_path):
    with pytest.raises(ValueError, match="calibration method"):
        tg.write_int8_qdq(tiny_onnx_model, tmp_path / "x.onnx", [], method="percentile")
    with pytest.raises(ValueError, match="is the input model"):
        tg.write_fp16(tiny_onnx_model, tiny_onnx_model, [])
    with pytest.raises(FileNotFoundError):
        tg.write_fp16(tmp_path / "missing.onnx", tmp_path / "x.onnx", [])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "drn_perception.deploy.quantize", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--quantize", "fp16"], "--quantize fp16 is for --target tensorrt"),
    (["--target", "tensorrt", "--method", "minmax"], "ONNX Runtime calibrator"),
    (["--target", "tensorrt", "--labels-only"], "--labels-only is for ONNX Runtime"),
    (["--target", "tensorrt", "--quantize", "fp16", "--method", "max"], "are for --quantize int8"),
    (["--method", "max"], "ModelOpt's calibrator"),
])
def test_cli_misuse_is_one_line_exit_2(tiny_onnx_model, tmp_path, args, message):
    out = tmp_path / "x.onnx"
    done = run_cli(tiny_onnx_model, "--out", out, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_writes_int8_graph_prints_agreement_and_parser_check(tiny_onnx_model, tmp_path):
    out = tmp_path / "tiny.qdq.onnx"
    done = run_cli(tiny_onnx_model, "--target", "tensorrt", "--quantize", "int8", "--calibration", "synthetic:2",
                   "--calibration-size", "64x128", "--check-frames", "2", "--float-precision", "fp32", "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "labels equal to the fp32 model" in done.stdout and "2 generated scenes at 64x128" in done.stdout
    assert "TensorRT 8.6 (JetPack 6.0): OK" in done.stdout and "TensorRT 11" in done.stdout
    record = json.loads(out.with_suffix(".json").read_text())["tensorrt_graph"]
    assert record["precision"] == "int8" and "synthetic" in record["calibration"]


def deploy_imports():
    graph = {}
    for path in DEPLOY.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("drn_perception.deploy."):
                    names.add(node.module.rsplit(".", 1)[1])
                elif node.module == "drn_perception.deploy":
                    names.update(a.name for a in node.names)
        graph[path.stem] = names - {path.stem}
    return graph


def test_deploy_has_no_import_cycle_and_no_oversized_file():
    graph = deploy_imports()
    assert "openvino_quantize" in graph["quantize"]  # the edge that used to go both ways
    state = {}

    def visit(name, stack):
        state[name] = "open"
        for dep in graph.get(name, ()):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join([*stack, name, dep])}"
            if dep not in state:
                visit(dep, [*stack, name])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])
    sizes = {p.name: len(p.read_text().splitlines()) for p in DEPLOY.glob("*.py")}
    assert max(sizes.values()) <= 520, sizes


def test_onnxruntime_int8_still_works_after_modelopt_in_the_same_process(tiny_onnx_model, int8_graphs, tmp_path):
    # ModelOpt patches ONNX Runtime's calibrators for good; the writer puts them back, so
    # drn-quantize's CPU graph (ORT quantize_static) can follow in one process (drn-bench, the suite).
    from drn_perception.deploy.quantize import quantize_int8

    out = quantize_int8(tiny_onnx_model, tmp_path / "tiny.int8.onnx", frames=list(calibration_frames(2, SIZE)))
    model = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def test_int8_graph_keeps_the_upsampled_logits_float(int8_graphs):
    model = onnx.load(str(int8_graphs["fp16"]))
    produced_by = {o: n.op_type for n in model.graph.node for o in n.output}
    up = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    assert all(produced_by.get(i) != "DequantizeLinear" for i in up.input)  # argmax and softmax read float logits


def test_build_engine_prints_the_activation_memory_of_its_default_profile(tiny_onnx_model, capsys):
    from drn_perception.deploy import tensorrt_build

    assert tensorrt_build.main([str(tiny_onnx_model), "--trtexec-only", "-o", "x.engine", "--cameras", "2",
                                "--sizes", "128x256"]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if li.startswith("activation memory"))
    assert "2x128x256x3" in line and "MiB" in line
    # 19 float32 class scores at 2x128x256 alone are 4.75 MiB: the peak cannot be below that
    assert float(line.split("about ")[1].split(" MiB")[0]) >= 4.75


def test_the_input_model_is_left_as_it_was(tiny_onnx_model, input_sha256, fp16_graph, int8_graphs):
    from drn_perception.model_info import sha256_file

    assert sha256_file(tiny_onnx_model) == input_sha256
