"""What TensorRT's ONNX parser takes, per supported TensorRT version: the facts deploy/trt_check.py applies.

Read from onnx/onnx-tensorrt (github.com/onnx/onnx-tensorrt), facts only, per release:

- 8.6 (JetPack 6.0): branch ``release/8.6-GA`` (tag) / ``8.6-GA``: docs/operators.md,
  ModelImporter.cpp, builtin_op_importers.cpp, onnx2trt_utils.cpp.
- 10.3 (JetPack 6.1/6.2): the stored snapshot's nearest branch is ``10.1-GA`` (docs/operators.md,
  ModelImporter.cpp, onnxOpImporters.cpp, importerUtils.cpp), plus what docs/Changelog.md says
  10.2 and 10.3 changed (10.3: ``Slice`` takes tensor ``axes``).
- 10.13-10.16 (JetPack 7.x): docs/operators.md as of TensorRT 10.15 (opsets 9-24, FP4 types,
  Attention, RMSNormalization, ...), importerUtils.cpp at fa5aa9f (``convertDtype`` with FP4) and
  onnxOpImporters.cpp at dd0a3a9; Changelog 10.4 (``Pad`` tensor ``axes``).
- 11.x (JetPack 7.2.2+): no 11 branch is among the stored sources; the newest ones (above) are
  applied, and 11's own change for graphs (strongly typed networks only, no implicit INT8) adds
  no parser rule: INT8 comes from Q/DQ on 10.x already.

Also from NVIDIA/TensorRT ``include/NvInferRuntimeBase.h`` (``DataType::kUINT8``, 8.6 and 10.x):
uint8 is a network input or output only, converted to/from kFLOAT or kHALF by a cast.

Each table below names the file it comes from. Type names are operators.md's ("Supported Types").
"""
from __future__ import annotations

from dataclasses import dataclass

TYPE_NAMES = ("FP32", "FP16", "BF16", "INT32", "INT64", "INT8", "UINT8", "BOOL", "FP8", "FP4", "INT4")


def _table(groups: dict[str, str]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for types, ops in groups.items():
        for op in ops.split():
            out[op] = frozenset(types.split())
    return out


@dataclass(frozen=True)
class TrtVersion:
    name: str
    jetpack: str
    opsets: tuple[int, int]  # operators.md: the ai.onnx opsets the release documents
    sources: str


VERSIONS = (
    TrtVersion("8.6", "JetPack 6.0", (1, 17), "onnx-tensorrt release/8.6-GA"),
    TrtVersion("10.3", "JetPack 6.1/6.2", (9, 20), "onnx-tensorrt 10.1-GA + Changelog 10.2-10.3"),
    TrtVersion("10.13-10.16", "JetPack 7.x", (9, 24), "onnx-tensorrt docs as of 10.15, importers dd0a3a9/fa5aa9f"),
    TrtVersion("11", "JetPack 7.2.2+", (9, 24), "newest stored onnx-tensorrt sources (no 11 branch stored)"),
)
VERSION_NAMES = tuple(v.name for v in VERSIONS)

# ONNX TensorProto data type -> operators.md name, per version: convertDtype() in onnx2trt_utils.cpp
# (8.6-GA) and importerUtils.cpp (10.1-GA; fa5aa9f adds FLOAT4E2M1). 8.6 maps INT64 to INT32 and
# every version DOUBLE to FLOAT (values clamped); a type not listed is refused wherever it appears.
# UINT8 initializers import as INT32 weights (convertOnnxWeights, onnx2trt_utils.cpp 8.6-GA;
# WeightsContext.cpp 10.1-GA), so a uint8 zero point reaches the Q/DQ helper as INT32, which warns
# and quantizes to INT8 (10.1-GA) or, non-zero, refuses it.
_DTYPES_8 = {1: "FP32", 10: "FP16", 6: "INT32", 7: "INT32", 3: "INT8", 2: "UINT8", 9: "BOOL", 11: "FP32"}
_DTYPES_10 = {**_DTYPES_8, 7: "INT64", 16: "BF16", 17: "FP8", 22: "INT4"}
DTYPES = {"8.6": _DTYPES_8, "10.3": _DTYPES_10, "10.13-10.16": {**_DTYPES_10, 23: "FP4"},
          "11": {**_DTYPES_10, 23: "FP4"}}

# Operators with a builtin importer and the types operators.md lists for them ("Y" rows; each
# matches the DEFINE_BUILTIN_OP_IMPORTER list of the same branch). 8.6-GA docs/operators.md:
_OPS_8_6 = _table({
    "FP32 FP16": "Acos Acosh Asin Asinh Atan Atanh BatchNormalization Ceil Celu Cos Cosh CumSum "
        "Dropout Einsum Erf Exp Floor GRU GridSample GroupNormalization ImageScaler "
        "InstanceNormalization IsInf LRN LSTM LayerNormalization Log LogSoftmax LpNormalization "
        "MatMul MeanVarianceNormalization NonMaxSuppression NonZero Pow QuantizeLinear RNN "
        "RandomNormal RandomNormalLike RandomUniform RandomUniformLike Reciprocal ReduceL1 ReduceL2 "
        "ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum "
        "ReduceSumSquare Resize RoiAlign Scan Sin Sinh Softmax Sqrt Tan Upsample",
    "FP32 FP16 INT32": "Abs Add ArgMax ArgMin DepthToSpace Div Equal Greater GreaterOrEqual IsNaN "
        "Less LessOrEqual Max Mean Min Mod Mul Neg Range Shrink SpaceToDepth Sub Sum TopK",
    "FP32 FP16 INT8": "Clip Conv ConvTranspose Elu Gemm GlobalAveragePool GlobalLpPool "
        "GlobalMaxPool HardSigmoid HardSwish LeakyRelu LpPool MaxPool PRelu ParametricSoftplus Relu "
        "Round ScaledTanh Selu Sigmoid Softplus Softsign Tanh ThresholdedRelu",
    "FP32 FP16 INT32 INT8 BOOL": "Concat Constant Gather GatherElements GatherND Identity Reshape "
        "ReverseSequence Shape Size Slice Squeeze Transpose Trilu Unsqueeze",
    "FP32 FP16 INT32 BOOL": "Expand EyeLike Flatten If Loop OneHot Split Tile Where",
    "FP32 FP16 INT32 INT8": "AveragePool Pad Scatter ScatterElements ScatterND Sign",
    "BOOL": "And Not Or Xor",
    "FP32": "ConstantOfShape",
    "FP32 FP16 INT32 INT8 UINT8 BOOL": "Cast",
    "INT8": "DequantizeLinear",
})


# The importer takes ConstantOfShape of any value type but UINT8 (builtin_op_importers.cpp,
# 8.6-GA); its operators.md row says FP32 only.
_OPS_8_6["ConstantOfShape"] = _OPS_8_6["Constant"]

# 10.1-GA docs/operators.md (ConstantOfShape's "INF64" read as INT64):
_OPS_10_1 = _table({
    "FP32 FP16 BF16": "Acos Acosh Asin Asinh Atan Atanh AveragePool BatchNormalization Ceil Celu "
        "Clip Conv ConvTranspose Cos Cosh CumSum Dropout Einsum Elu Erf Exp Floor GRU Gemm "
        "GlobalAveragePool GlobalLpPool GlobalMaxPool GroupNormalization HardSigmoid HardSwish "
        "Hardmax ImageScaler InstanceNormalization IsInf LRN LSTM LayerNormalization LeakyRelu Log "
        "LogSoftmax LpNormalization LpPool MatMul MaxPool MeanVarianceNormalization PRelu "
        "ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform "
        "RandomUniformLike Reciprocal Resize Round ScaledTanh Scan Selu Sigmoid Sin Sinh Softmax "
        "Softplus Softsign Sqrt Tan Tanh ThresholdedRelu Upsample",
    "FP32 FP16 BF16 INT32 INT64": "Abs Add ArgMax ArgMin DepthToSpace Div Equal Greater "
        "GreaterOrEqual IsNaN Less LessOrEqual Max Min Mod Mul Neg Pad Range ReduceL1 ReduceL2 "
        "ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum "
        "ReduceSumSquare Relu Scatter ScatterElements ScatterND Shrink Sign SpaceToDepth Sub Sum "
        "TopK",
    "FP32 FP16 BF16 INT32 INT64 BOOL": "Concat Constant ConstantOfShape Expand EyeLike Flatten "
        "Gather GatherElements GatherND Identity If Loop OneHot Reshape ReverseSequence Shape Size "
        "Slice Split Squeeze Tile Transpose Trilu Unsqueeze Where",
    "FP32 FP16": "DeformConv GridSample Mish NonMaxSuppression NonZero RoiAlign",
    "BOOL": "And Not Or Xor",
    "FP32 FP16 BF16 INT32 INT64 UINT8 BOOL": "Cast CastLike",
    "FP32 FP16 BF16 INT32 INT64 FP8": "Mean",
    "FP32 FP16 BF16 INT32 INT64 INT8": "Gelu",
    "INT8 FP8 INT4": "DequantizeLinear",
})


# As of 10.15 docs/operators.md: the 10.1 rows plus these.
_OPS_10_15 = {
    **_OPS_10_1,
    "Constant": _OPS_10_1["Constant"] | {"FP8", "FP4", "INT4"},
    "ConstantOfShape": _OPS_10_1["ConstantOfShape"] | {"FP8", "FP4", "INT4"},
    "DequantizeLinear": _OPS_10_1["DequantizeLinear"] | {"FP4"},
    "Pow": _OPS_10_1["Pow"] | {"INT32", "INT64"},
    **_table({
        "FP32 FP16": "BlackmanWindow HammingWindow HannWindow",
        "FP32": "STFT",
        "FP32 FP16 BF16": "RMSNormalization RotaryEmbedding",
        "FP32 FP16 BF16 INT32": "TensorScatter",
        "FP32 FP16 BF16 INT8 FP8": "Attention",
    }),
}
OPS = {"8.6": _OPS_8_6, "10.3": _OPS_10_1, "10.13-10.16": _OPS_10_15, "11": _OPS_10_15}

# TensorRT's own ops the importers register (TRT_* names) that a Q/DQ tool may write.
TRT_OPS = {
    "8.6": frozenset({"TRT_FP8QuantizeLinear", "TRT_FP8DequantizeLinear"}),
    "10.3": frozenset({"TRT_FP8QuantizeLinear", "TRT_FP8DequantizeLinear", "TRT_INT4QuantizeLinear",
                       "TRT_INT4DequantizeLinear"}),
}
TRT_OPS["10.13-10.16"] = TRT_OPS["11"] = TRT_OPS["10.3"]
# ONNX model-local functions are inlined from 9.0 (Changelog 9.0 EA); 8.6 has no importer for them.
LOCAL_FUNCTIONS = {"8.6": False, "10.3": True, "10.13-10.16": True, "11": True}

# Which inputs carry the operator's "Supported Types" (the rest are indices, shapes, axes).
ALL_INPUTS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Concat", "Equal",
                        "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "PRelu"})
TYPED_INPUTS = {"Where": (1, 2)}
TYPED_BY_OUTPUT = frozenset({"Constant", "ConstantOfShape", "RandomNormal", "RandomUniform", "Range", "EyeLike"})

# Resize (builtin_op_importers.cpp 8.6-GA, onnxOpImporters.cpp 10.1-GA; operators.md 10.x rows).
RESIZE_MODES = frozenset({"nearest", "linear", "cubic"})
RESIZE_COORDINATE_MODES = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                                     "align_corners"})
RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})
RESIZE_INNER_DIMS = {"linear": 3, "cubic": 2}  # canUseNDResize: scales != 1 only on the last N axes
# Pad modes: 8.6-GA constant/reflect/edge; "wrap" from 10.0 (Changelog 10.0 EA).
PAD_MODES = {"8.6": frozenset({"constant", "reflect", "edge"})}
PAD_MODES["10.3"] = PAD_MODES["10.13-10.16"] = PAD_MODES["11"] = PAD_MODES["8.6"] | {"wrap"}
# Pad's opset-18 ``axes`` input: refused on 8.6, an initializer on 10.1-10.3, a tensor from 10.4.
PAD_AXES = {"8.6": "none", "10.3": "constant", "10.13-10.16": "any", "11": "any"}
# Slice ``axes``: must be constant before 10.3 (8.6-GA: "does not support dynamic axes").
SLICE_TENSOR_AXES = {"8.6": False, "10.3": True, "10.13-10.16": True, "11": True}
# getKernelParams (onnx2trt_utils.cpp 8.6-GA, importerUtils.cpp 10.1-GA) throws on other auto_pad.
AUTO_PAD = frozenset({"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "EXPLICIT_ROUND_UP", "CAFFE_ROUND_DOWN",
                      "CAFFE_ROUND_UP"})

# Q/DQ (QuantDequantLinearHelper): quantized types by zero point / output_dtype, and scale types.
QDQ_TYPES = {"8.6": frozenset({"INT8"}), "10.3": frozenset({"INT8", "FP8", "INT4"}),
             "10.13-10.16": frozenset({"INT8", "FP8", "INT4", "FP4"}), "11": frozenset({"INT8", "FP8", "INT4", "FP4"})}
QDQ_SCALE_TYPES = {"8.6": frozenset({"FP32"})}  # 8.6 reads the scale's values as float
QDQ_SCALE_TYPES["10.3"] = QDQ_SCALE_TYPES["10.13-10.16"] = QDQ_SCALE_TYPES["11"] = frozenset({"FP32", "FP16", "BF16"})
# 8.6 needs the zero point as a third input; 10.x defaults to INT8 without one.
QDQ_NEEDS_ZERO_POINT = {"8.6": True, "10.3": False, "10.13-10.16": False, "11": False}
# Scales of the input's rank (blocked quantization) from 10.0; per-axis activation scales
# ("Activations-quantization does not support per-axis quantization", the helper's comment)
# are refused where nothing newer says otherwise.
QDQ_BLOCKED = {"8.6": False, "10.3": True, "10.13-10.16": True, "11": True}
QDQ_PER_AXIS_ACTIVATIONS = {"8.6": False, "10.3": False, "10.13-10.16": None, "11": None}  # None: unknown, warn
