"""deploy/trt_check.py: one small graph per rule, refused for the right reason on the right versions.

Each graph breaks one rule of TensorRT's ONNX parser (deploy/trt_rules.py says where each comes
from); its twin that keeps the rule is accepted. Then the real graphs: the export as it was
(uint8 permuted before the cast) is refused everywhere, today's exports are accepted everywhere.
"""
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from drn_perception.deploy.trt_check import CheckError, check_model, resolve_version
from drn_perception.deploy.trt_rules import VERSION_NAMES

ALL = set(VERSION_NAMES)
SHIPPED = "drn_perception/assets/drn_c_26_w025_synthetic.onnx"


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def make(nodes, inputs, outputs, inits=(), opset=17, functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))


def refused(model, reason):
    """The versions that refuse ``model``; every refusal must carry ``reason``."""
    report = check_model(model)
    out = set(report.refused_versions())
    for v in out:
        assert all(reason in str(f) for f in report.refusals(v)), (v, report.format())
    return out


def unary(op, dtype=TP.FLOAT, out_dtype=None, shape=(1, 3, 8, 8), opset=17, **attrs):
    return make([helper.make_node(op, ["x"], ["y"], name="n", **attrs)], [vi("x", dtype, shape)],
                [vi("y", out_dtype or dtype, None)], opset=opset)


# --- uint8 ----------------------------------------------------------------------------------------

def test_uint8_input_into_cast_then_transpose_is_accepted():
    m = make([helper.make_node("Cast", ["x"], ["f"], to=TP.FLOAT), helper.make_node("Transpose", ["f"], ["y"],
                                                                                   perm=[0, 3, 1, 2])],
             [vi("x", TP.UINT8, [1, 8, 8, 3])], [vi("y", TP.FLOAT, None)])
    assert refused(m, "") == set()


def test_uint8_intermediate_tensor_is_refused_by_the_parser():
    m = make([helper.make_node("Transpose", ["x"], ["t"], name="tr", perm=[0, 3, 1, 2]),
              helper.make_node("Cast", ["t"], ["y"], to=TP.FLOAT)],
             [vi("x", TP.UINT8, [1, 8, 8, 3])], [vi("y", TP.FLOAT, None)])
    report = check_model(m)
    for v in VERSION_NAMES:
        reasons = [f.reason for f in report.refusals(v)]
        assert any("UINT8 types for intermediate tensors" in r for r in reasons), report.format()
        assert any("may only feed Casts" in r for r in reasons)


def test_shape_of_the_uint8_input_is_refused():
    m = make([helper.make_node("Shape", ["x"], ["s"], name="shape"),
              helper.make_node("Cast", ["x"], ["y"], to=TP.FLOAT)],
             [vi("x", TP.UINT8, [1, 8, 8, 3])], [vi("y", TP.FLOAT, None), vi("s", TP.INT64, None)])
    assert refused(m, "uint8 network input 'x'") == ALL
    assert check_model(m).refusals("8.6")[0].stage == "builder"


def test_uint8_casts_only_to_float_or_half():
    for to, expect in ((TP.INT32, ALL), (TP.FLOAT16, set())):
        m = make([helper.make_node("Cast", ["x"], ["y"], to=to)], [vi("x", TP.UINT8, [4])], [vi("y", to, None)])
        assert refused(m, "uint8") == expect


def test_uint8_output_must_come_from_a_cast_of_float():
    ok = make([helper.make_node("Cast", ["x"], ["y"], to=TP.UINT8)], [vi("x", TP.FLOAT, [4])],
              [vi("y", TP.UINT8, None)])
    assert refused(ok, "") == set()
    bad = make([helper.make_node("Cast", ["x"], ["y"], to=TP.UINT8)], [vi("x", TP.INT32, [4])],
               [vi("y", TP.UINT8, None)])
    assert refused(bad, "uint8 network output") == ALL


# --- operators and types --------------------------------------------------------------------------

def test_operator_without_an_importer_is_refused():
    fused = make([helper.make_node("FusedConv", ["x"], ["y"], name="f", domain="com.microsoft")],
                 [vi("x", TP.FLOAT, [1, 3, 8, 8])], [vi("y", TP.FLOAT, None)])
    fused.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert refused(fused, "no importer for FusedConv (domain com.microsoft)") == ALL


def test_operators_per_release():
    assert refused(unary("Mish", opset=18), "no importer for Mish") == {"8.6"}
    assert refused(unary("Hardmax", axis=1), "no importer for Hardmax") == {"8.6"}
    stft = make([helper.make_node("STFT", ["x", "step"], ["y"])], [vi("x", TP.FLOAT, [1, 64, 1])],
                [vi("y", TP.FLOAT, None)], inits=[init("step", np.array(16, np.int64))])
    assert refused(stft, "no importer for STFT") == {"8.6", "10.3"}


def test_model_local_functions_need_9_0():
    fn = helper.make_function("local", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    m = make([helper.make_node("Twice", ["x"], ["y"], domain="local")], [vi("x", TP.FLOAT, [4])],
             [vi("y", TP.FLOAT, [4])], functions=[fn])
    m.opset_import.append(helper.make_opsetid("local", 1))
    assert refused(m, "model-local function") == {"8.6"}


def test_tensor_types_per_release():
    assert refused(unary("Relu", TP.BFLOAT16), "BFLOAT16") == {"8.6"}
    fp4 = make([helper.make_node("DequantizeLinear", ["x", "s"], ["y"])], [vi("x", TP.FLOAT4E2M1, [1, 4])],
               [vi("y", TP.FLOAT, None)], inits=[init("s", np.float32(0.5))], opset=23)
    assert refused(fp4, "FLOAT4E2M1") == {"8.6", "10.3"}


def test_operator_input_types():
    assert refused(unary("Softmax", TP.INT32), "Softmax takes FP32, FP16") == ALL
    assert refused(unary("Relu", TP.INT32), "Relu takes FP32, FP16, INT8") == {"8.6"}  # INT32 Relu from 10.0
    add = make([helper.make_node("Add", ["a", "b"], ["y"])], [vi("a", TP.FLOAT, [2]), vi("b", TP.BOOL, [2])],
               [vi("y", TP.FLOAT, None)])
    assert refused(add, "input 'b' is BOOL") == ALL  # every input of an elementwise op counts


def test_int64_io_binds_as_int32_on_8_6():
    m = unary("ArgMax", TP.FLOAT, TP.INT64, axis=1, keepdims=0)
    report = check_model(m)
    assert report.ok
    assert [f.node for f in report.warnings("8.6")] == ["y"] and "INT32" in report.warnings("8.6")[0].reason
    assert all(not report.warnings(v) for v in VERSION_NAMES if v != "8.6")
    to_int32 = make([helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
                     helper.make_node("Cast", ["i"], ["y"], to=TP.INT32)],
                    [vi("x", TP.FLOAT, [1, 3, 8, 8])], [vi("y", TP.INT32, None)])
    assert not check_model(to_int32).warnings("8.6")


# --- attributes -----------------------------------------------------------------------------------

def resize(opset=17, scales=(1, 1, 2, 2), **attrs):
    return make([helper.make_node("Resize", ["x", "", "s"], ["y"], name="r", **attrs)],
                [vi("x", TP.FLOAT, [1, 3, 8, 8])], [vi("y", TP.FLOAT, None)],
                inits=[init("s", np.array(scales, np.float32))], opset=opset)


def test_resize_rules():
    assert refused(resize(mode="linear", coordinate_transformation_mode="half_pixel"), "") == set()
    assert refused(resize(mode="cubic"), "") == set()
    assert refused(resize(coordinate_transformation_mode="tf_crop_and_resize"), "coordinate_transformation_mode") \
        == ALL
    assert refused(resize(coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor"),
                   "round_prefer_floor") == {"8.6"}
    assert refused(resize(18, mode="linear", antialias=1), "antialias") == ALL
    assert refused(resize(18, keep_aspect_ratio_policy="not_larger"), "keep_aspect_ratio_policy") == ALL
    assert refused(resize(mode="linear", scales=(2, 1, 2, 2)), "linear resize of an axis") == ALL
    assert refused(resize(mode="cubic", scales=(1, 2, 2, 2)), "cubic resize of an axis") == ALL


def pad(opset, mode="constant", axes=None, axes_from_input=False):
    inputs, inits = [vi("x", TP.FLOAT, [1, 3, 8, 8])], [init("p", np.array([1, 1, 1, 1], np.int64))]
    names = ["x", "p", ""]
    if axes_from_input:
        inputs.append(vi("a", TP.INT64, [2]))
        names.append("a")
    elif axes is not None:
        inits.append(init("a", np.array(axes, np.int64)))
        names.append("a")
    else:
        inits[0] = init("p", np.zeros(8, np.int64) + 1)
    return make([helper.make_node("Pad", names, ["y"], mode=mode)], inputs, [vi("y", TP.FLOAT, None)],
                inits=inits, opset=opset)


def test_pad_rules():
    assert refused(pad(17, "reflect"), "") == set()
    assert refused(pad(19, "wrap"), "mode 'wrap'") == {"8.6"}
    assert refused(pad(18, axes=[2, 3]), "axes input") == {"8.6"}
    assert refused(pad(18, axes_from_input=True), "axes input") == {"8.6", "10.3"}


def test_axes_that_must_be_constant():
    start = [init("st", np.array([0], np.int64)), init("en", np.array([4], np.int64))]
    slice_tensor_axes = make([helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"])],
                             [vi("x", TP.FLOAT, [8, 8]), vi("ax", TP.INT64, [1])], [vi("y", TP.FLOAT, None)],
                             inits=start)
    assert refused(slice_tensor_axes, "constant Slice axes") == {"8.6"}
    unsq = make([helper.make_node("Unsqueeze", ["x", "ax"], ["y"])], [vi("x", TP.FLOAT, [8]), vi("ax", TP.INT64, [1])],
                [vi("y", TP.FLOAT, None)])
    assert refused(unsq, "Unsqueeze axes from a tensor") == ALL
    unsq_const = make([helper.make_node("Unsqueeze", ["x", "ax"], ["y"])], [vi("x", TP.FLOAT, [8])],
                      [vi("y", TP.FLOAT, None)], inits=[init("ax", np.array([0], np.int64))])
    assert refused(unsq_const, "") == set()
    reduce = make([helper.make_node("ReduceMax", ["x", "ax"], ["y"])], [vi("x", TP.FLOAT, [2, 8]),
                                                                       vi("ax", TP.INT64, [1])],
                  [vi("y", TP.FLOAT, None)], opset=18)
    assert refused(reduce, "ReduceMax axes from a tensor") == ALL


def test_kernel_and_pooling_rules():
    w = [init("w", np.ones((3, 3, 3, 3), np.float32))]
    conv = make([helper.make_node("ConvTranspose", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
                [vi("x", TP.FLOAT, [1, 3, 8, 8])], [vi("y", TP.FLOAT, None)], inits=w)
    assert refused(conv, "") == set()
    conv.graph.node[0].attribute[0].s = b"SAME_CENTRE"
    assert refused(conv, "auto_pad 'SAME_CENTRE'") == ALL
    indices = make([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])],
                   [vi("x", TP.FLOAT, [1, 3, 8, 8])], [vi("y", TP.FLOAT, None), vi("i", TP.INT64, None)])
    assert refused(indices, "Indices output") == ALL
    assert refused(unary("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]), "dilations") == ALL
    assert refused(unary("AveragePool", shape=(1, 3, 4, 4, 4, 4), kernel_shape=[2, 2, 2, 2]), "pools 2D or 3D") == ALL
    assert refused(unary("AveragePool", shape=(1, 3, 8), kernel_shape=[2]), "") == set()  # 1D, as 2D
    assert refused(unary("MaxPool", kernel_shape=[2, 2]), "") == set()


def test_topk_dropout_constant_rules():
    def topk(k, **attrs):
        return make([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, **attrs)],
                    [vi("x", TP.FLOAT, [1, 5000])], [vi("v", TP.FLOAT, None), vi("i", TP.INT64, None)],
                    inits=[init("k", np.array([k], np.int64))])

    assert set(check_model(topk(5)).refused_versions()) == set()
    assert refused(topk(5, sorted=0), "sorted=0") == ALL - {"8.6"}  # a restriction operators.md states from 10.0
    assert refused(topk(4000), "K=4000") == ALL
    drop = make([helper.make_node("Dropout", ["x", "", "t"], ["y"])], [vi("x", TP.FLOAT, [4])],
                [vi("y", TP.FLOAT, None)], inits=[init("t", np.array(True))])
    assert refused(drop, "is_training") == ALL
    sparse = helper.make_sparse_tensor(helper.make_tensor("v", TP.FLOAT, [1], [1.0]),
                                       helper.make_tensor("i", TP.INT64, [1], [0]), [4])
    const = make([helper.make_node("Constant", [], ["y"], sparse_value=sparse)], [], [vi("y", TP.FLOAT, None)])
    assert refused(const, "attribute sparse_value") == ALL
    text = make([helper.make_node("Constant", [], ["y"], value_string="a")], [], [vi("y", TP.STRING, None)])
    assert refused(text, "STRING") == ALL


# --- Q/DQ -----------------------------------------------------------------------------------------

def qdq(zp=None, scale=np.float32(0.1), opset=17, x_shape=(1, 3, 8, 8), axis=None, out=TP.FLOAT, q_attrs=None):
    inits, q_in = [init("s", scale)], ["x", "s"]
    if zp is not None:
        inits.append(numpy_helper.from_array(np.asarray(zp), "z") if not isinstance(zp, onnx.TensorProto) else zp)
        q_in.append("z")
    axis_attr = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", q_in, ["q"], name="q", **axis_attr, **(q_attrs or {})),
             helper.make_node("DequantizeLinear", ["q", *q_in[1:]], ["y"], name="dq", **axis_attr)]
    return make(nodes, [vi("x", TP.FLOAT, list(x_shape))], [vi("y", out, None)], inits=inits, opset=opset)


def test_symmetric_int8_per_tensor_qdq_is_accepted():
    assert refused(qdq(np.int8(0)), "") == set()


def test_uint8_qdq_is_refused():
    """What ONNX Runtime's quantize_static writes by default: uint8, asymmetric."""
    assert refused(qdq(np.uint8(0)), "uint8") == ALL
    assert "uint8 (asymmetric)" in str(check_model(qdq(np.uint8(128))).refusals("10.3"))


def test_nonzero_zero_point_is_refused():
    assert refused(qdq(np.int8(3)), "zero point is not 0") == ALL


def test_zero_point_input_and_output_dtype():
    assert refused(qdq(None, opset=21, q_attrs={"output_dtype": TP.INT8}), "zero point input") == {"8.6"}


def test_fp8_and_int4_qdq_from_10_0():
    fp8 = helper.make_tensor("z", TP.FLOAT8E4M3FN, [], [0.0])
    assert refused(qdq(fp8, opset=19), "FLOAT8E4M3FN") == {"8.6"}
    int4 = helper.make_tensor("z", TP.INT4, [], [0])
    assert refused(qdq(int4, opset=21), "INT4") == {"8.6"}
    odd = helper.make_tensor("z", TP.INT4, [], [0])
    assert refused(qdq(odd, opset=21, x_shape=(1, 3, 8, 7)), "") == ALL
    assert "odd last dimension" in str(check_model(qdq(odd, opset=21, x_shape=(1, 3, 8, 7))).refusals("11"))


def test_scale_rules():
    assert refused(qdq(np.int8(0), scale=np.float16(0.1)), "scale is FP16") == {"8.6"}
    assert refused(qdq(np.int8(0), scale=np.float32(-0.1)), "positive") == ALL


def dq_weights(scales, axis=0, shape=(4, 3, 3, 3), zp_shape=None):
    w = init("w", np.ones(shape, np.int8))
    s = init("s", np.full(scales, 0.1, np.float32))
    z = init("z", np.zeros(zp_shape or scales, np.int8))
    attrs = {} if axis is None else {"axis": axis}
    return make([helper.make_node("DequantizeLinear", ["w", "s", "z"], ["y"], name="dq", **attrs)], [],
                [vi("y", TP.FLOAT, None)], inits=[w, s, z])


def test_per_axis_rules():
    assert refused(dq_weights([4]), "") == set()
    assert refused(dq_weights([5]), "5 scales for 4 channels") == ALL
    assert refused(dq_weights([4], axis=None), "without an axis attribute") == ALL
    assert refused(dq_weights([4, 3, 1, 3], axis=2), "scale of rank 4") == {"8.6"}  # blocked, from 10.0
    act = qdq(np.zeros(3, np.int8), scale=np.full(3, 0.1, np.float32), axis=1)
    report = check_model(act)
    assert set(report.refused_versions()) == {"8.6", "10.3"}
    assert "activation" in report.refusals("8.6")[0].reason
    assert "activation" in report.warnings("11")[0].reason


def test_opset_outside_a_release_is_a_warning():
    report = check_model(unary("Relu", opset=21))
    assert report.ok
    assert [v for v in VERSION_NAMES if any("opset 21" in f.reason for f in report.warnings(v))] == ["8.6", "10.3"]


def test_versions_by_name():
    assert resolve_version("10.16") == resolve_version("10.13.1") == "10.13-10.16"
    assert resolve_version("11.4.1") == resolve_version("11.x") == "11"
    assert resolve_version("8.6") == "8.6" and resolve_version("10.3.0") == "10.3"
    with pytest.raises(ValueError, match="not a supported version"):
        resolve_version("8.5")
    report = check_model(unary("Mish", opset=18), versions=["10.16", "8.6"])
    assert report.versions == ("10.13-10.16", "8.6") and report.refused_versions() == ["8.6"]


# --- real graphs ----------------------------------------------------------------------------------

def old_export(checkpoint, out):
    """The graph drn-export wrote before the fix: the uint8 image permuted before its Cast, and
    the crop's Shape nodes reading the uint8 input."""
    from drn_perception.deploy.export import load_model
    from drn_perception.models.pipeline import SegmentationPipeline

    class Old(SegmentationPipeline):
        def normalise(self, images):
            x = images.permute(0, 3, 1, 2).contiguous().float() / 255.0
            return (x - self.mean) / self.std

        def segment(self, images, confidence):
            h, w = images.shape[1:3]
            labels, conf = self.decode(self._uncropped_logits(images), True)
            return labels[:, :h, :w], conf[:, :h, :w]

    model, info = load_model(checkpoint)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Old(model, info.mean, info.std).eval(), (torch.zeros(1, 64, 64, 3, dtype=torch.uint8),),
                          out, dynamo=False, opset_version=17, input_names=["images"],
                          output_names=["labels", "confidence"],
                          dynamic_axes={n: {0: "N", 1: "H", 2: "W"} for n in ("images", "labels", "confidence")})
    return out


def test_old_export_is_refused_on_every_version(tiny_checkpoint, tmp_path):
    g = onnx.load(old_export(tiny_checkpoint, tmp_path / "old.onnx"))
    assert [n.op_type for n in g.graph.node if "images" in n.input] == ["Shape", "Shape", "Transpose"]
    report = check_model(tmp_path / "old.onnx")
    assert report.refused_versions() == list(VERSION_NAMES)
    for v in VERSION_NAMES:
        assert {f.op for f in report.refusals(v)} == {"Shape", "Transpose"}


def test_new_exports_are_accepted_on_every_version(tiny_onnx_model):
    for path in (tiny_onnx_model, SHIPPED):
        report = check_model(path)
        assert report.ok and report.versions == VERSION_NAMES, report.format()
        assert not any(report.warnings(v) for v in VERSION_NAMES), report.format()


def run_check(path):
    return subprocess.run([sys.executable, "-m", "drn_perception.deploy.tensorrt_build", "--check", str(path)],
                          capture_output=True, text=True)


def test_build_engine_check_cli(tiny_checkpoint, tiny_onnx_model, tmp_path):
    ok = run_check(tiny_onnx_model)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count(": OK") == len(VERSION_NAMES) and "TensorRT 10.13-10.16 (JetPack 7.x): OK" in ok.stdout
    old = run_check(old_export(tiny_checkpoint, tmp_path / "old.onnx"))
    assert old.returncode == 1
    assert "/Transpose [Transpose]" in old.stdout and "UINT8 types for intermediate tensors" in old.stdout
    assert old.stderr.strip().endswith(f"TensorRT 8.6, 10.3, 10.13-10.16, 11 would refuse {tmp_path / 'old.onnx'}")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00 not protobuf \x01" * 20)
    for bad in (tmp_path / "junk.onnx", tmp_path / "missing.onnx"):
        r = run_check(bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    with pytest.raises(CheckError, match="no such file"):
        check_model(tmp_path / "missing.onnx")


def test_onnx_runtime_qdq_graphs(tiny_onnx_model, tmp_path):
    """ONNX Runtime's quantizer: its uint8 asymmetric Q/DQ is refused everywhere; symmetric int8,
    per-channel weights, bias left in float (TensorRT's form) is accepted everywhere."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from drn_perception.data.synthetic import generate_scene

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.frames = iter([{"images": generate_scene(s, 64, 96)[0][None]} for s in range(2)])

        def get_next(self):
            return next(self.frames, None)

    def quantize(name, **kw):
        out = tmp_path / f"{name}.onnx"
        quantize_static(str(tiny_onnx_model), str(out), Frames(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], **kw)
        return check_model(out)

    u8 = quantize("u8", activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    assert u8.refused_versions() == list(VERSION_NAMES)
    assert any("uint8 (asymmetric)" in f.reason for f in u8.refusals("11"))
    sym = quantize("sym", activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                   extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    assert sym.ok, sym.format()
    per_channel = [n for n in onnx.load(tmp_path / "sym.onnx").graph.node
                   if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)]
    assert per_channel  # the per-axis rules were exercised, not skipped
