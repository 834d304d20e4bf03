"""The TensorRT code, checked without TensorRT (no machine of this project has it).

* Every TensorRT name the code uses exists in every supported TensorRT version it can run on
  (8.6, 10.3, 10.16 for 10.13-10.16, 11.1 for 11.x): names outside a version check must be in all
  four lists; names inside ``if TRT_VERSION <op> (major, minor)`` must be in the per-version lists
  of the versions where that branch runs.
* Per-version rules beyond the names (QUALIFIED_RULES): BuilderFlag.FP16/INT8 and EXPLICIT_BATCH
  only where the network is weakly typed (8.6), STRONGLY_TYPED only from 10, BF16 and the
  implicit-calibration API (calibrators, int8_calibrator, set_calibration_profile) nowhere. The names are found by reading the
  code with ``ast``: attributes of the ``tensorrt`` module alias, and attributes/methods of values
  that come from it (assignments, call results, parameters annotated with ``trt.`` types, ``self``
  attributes). The lists (test/data/tensorrt_api, a copy of shared/tensorrt) hold member names
  read from the bindings' source; class names and the ONNX parser's methods are not in them and
  are listed below, with the versions that have them; mypy checks them against tensorrt-stubs.
* mypy against tensorrt-stubs, in a lint-only virtualenv (tools/lint_tensorrt.sh).
* Import hygiene, the backend's "not installed" error, and drn-build-engine's command line.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drn_perception.deploy import tensorrt_build
from drn_perception.inference.engine_meta import BuildRequest, RuntimeEnv, default_engine_path
from drn_perception.model_info import ModelInfo, cityscapes, sha256_file, sidecar_path

REPO = Path(__file__).resolve().parent.parent
API_DIR = Path(__file__).resolve().parent / "data" / "tensorrt_api"
# The supported matrix (inference/trt_versions.py); 10.16 stands for 10.13-10.16, 11.1 for 11.x.
VERSIONS = {"8.6": (8, 6), "10.3": (10, 3), "10.16": (10, 16), "11.1": (11, 1)}
ALL = frozenset(VERSIONS)
WEAKLY_TYPED = frozenset({"8.6"})
STRONGLY_TYPED = ALL - WEAKLY_TYPED
TRT_FILES = {
    "backend": REPO / "drn_perception/inference/tensorrt_backend.py",
    "build": REPO / "drn_perception/deploy/tensorrt_build.py",
}
PURE_FILES = [REPO / f"drn_perception/{f}.py" for f in (
    "inference/engine_meta", "inference/trt_versions", "inference/trt_profile", "deploy/calibration",
    "deploy/tensorrt_graphs", "deploy/tensorrt_profile", "deploy/trtexec")]

# Names on the tensorrt module itself (classes, enums, functions), which the member lists do not
# hold, with the versions that have them (TensorRT's Python API documentation of each release).
MODULE_NAMES = {
    "__version__": ALL,
    "Logger": ALL, "ILogger": ALL, "Builder": ALL, "Runtime": ALL, "OnnxParser": ALL, "Dims": ALL,
    "BuilderFlag": ALL, "MemoryPoolType": ALL, "NetworkDefinitionCreationFlag": ALL, "DeviceType": ALL,
    "DataType": ALL, "TensorIOMode": ALL,
    "IBuilderConfig": ALL, "INetworkDefinition": ALL, "ICudaEngine": ALL, "IExecutionContext": ALL, "ITensor": ALL,
    # Implicit INT8 calibration (deprecated in 10.1, removed in 11): int8 is explicit Q/DQ everywhere.
    "IInt8Calibrator": frozenset(), "IInt8EntropyCalibrator2": frozenset(),
}
# Per-version rules for enum members (trt.Enum.MEMBER) and members the flat lists cannot tell apart
# (DataType.INT8 exists on 11, BuilderFlag.INT8 does not: the member lists hold only "INT8").
QUALIFIED_RULES = {
    "BuilderFlag.FP16": WEAKLY_TYPED, "BuilderFlag.INT8": WEAKLY_TYPED, "BuilderFlag.BF16": frozenset(),
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": WEAKLY_TYPED,
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": STRONGLY_TYPED,
    ".int8_calibrator": frozenset(), ".set_calibration_profile": frozenset(),
}
# OnnxParser.parse / get_error and ParserError.desc / node come from the ONNX parser's bindings,
# which the lists do not cover; all exist since TensorRT 7.
PARSER_NAMES = {"parse", "get_error", "desc", "node"}


def api_names(version: str) -> set[str]:
    return set((API_DIR / f"python-api-names-{version}.txt").read_text().split())


API = {v: api_names(v) for v in VERSIONS}
COMMON = set.intersection(*API.values())


# ---------------------------------------------------------------------------------------------
# The checker


@dataclass
class Use:
    name: str
    kind: str  # "module" (trt.X), "member" (x.X on a TensorRT value) or "qualified" (trt.Enum.MEMBER)
    versions: frozenset
    line: int


@dataclass
class Scan:
    uses: list[Use] = field(default_factory=list)

    def names(self) -> set[str]:
        return {u.name for u in self.uses}

    def problems(self, path: str) -> list[str]:
        out = []
        for u in self.uses:
            where = f"{path}:{u.line}: {'trt.' if u.kind in ('module', 'qualified') else '.'}{u.name}"
            rule = QUALIFIED_RULES.get(u.name if u.kind == "qualified" else f".{u.name}")
            if rule is not None and not u.versions <= rule:
                out.append(f"{where} breaks a per-version rule on TensorRT {sorted(u.versions - rule)} "
                           f"(allowed on {sorted(rule) or 'none'})")
            if u.kind == "qualified":
                continue
            if u.kind == "module":
                have = MODULE_NAMES.get(u.name)
                if have is None:
                    out.append(f"{where} is not a known TensorRT module name (add it to MODULE_NAMES with its versions)")
                elif not u.versions <= have:
                    out.append(f"{where} is missing in TensorRT {sorted(u.versions - have)}: guard it with a version check")
                continue
            if u.name in PARSER_NAMES or (u.name.startswith("__") and u.name.endswith("__")):
                continue
            missing = sorted(v for v in u.versions if u.name not in API[v])
            if missing:
                out.append(f"{where} is missing in TensorRT {missing}: guard it with a version check")
            elif u.versions == ALL and u.name not in COMMON:
                out.append(f"{where} is used without a version check but is not in every supported version")
        return out


def _version_cond(node: ast.expr, version: tuple[int, int]) -> bool | None:
    """Value of an if-test for one TensorRT version: True/False where it depends only on
    TRT_VERSION, None where it also depends on other things."""
    if isinstance(node, ast.BoolOp):
        values = [_version_cond(v, version) for v in node.values]
        if isinstance(node.op, ast.And):
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _version_cond(node.operand, version)
        return None if inner is None else not inner
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = node.left, node.comparators[0]
        name = left.id if isinstance(left, ast.Name) else getattr(left, "attr", None)
        if name == "TRT_VERSION" and isinstance(right, ast.Tuple):
            bound = tuple(ast.literal_eval(right))
            ops = {ast.Lt: tuple.__lt__, ast.LtE: tuple.__le__, ast.Gt: tuple.__gt__, ast.GtE: tuple.__ge__}
            op = ops.get(type(node.ops[0]))
            if op is not None:
                return op(version, bound)
    return None


def _bound_names(target: ast.AST) -> set[str]:
    """Plain names an assignment target binds (x, or x, y); not the object of x.attr or x[i]."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_bound_names(e) for e in target.elts))
    if isinstance(target, ast.Starred):
        return _bound_names(target.value)
    return set()


def _terminates(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Raise, ast.Return, ast.Continue, ast.Break))


class Checker:
    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.scan = Scan()
        self.aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                        for a in n.names if a.name == "tensorrt"}
        # Module functions whose return annotation is a TensorRT type.
        self.trt_functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                              and n.returns is not None and self._mentions_trt(n.returns)}
        self.self_attrs: set[str] = set()
        self.lazy_annotations = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                                    and any(a.name == "annotations" for a in n.names) for n in tree.body)

    def _mentions_trt(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return any(node.value.startswith(a + ".") or f" {a}." in node.value or f"\"{a}." in node.value
                       for a in self.aliases | {"tensorrt"})
        return any(isinstance(n, ast.Name) and n.id in self.aliases for n in ast.walk(node))

    def is_trt(self, node: ast.AST, env: set[str]) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.aliases or node.id in env
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in self.self_attrs:
                return True
            return self.is_trt(node.value, env)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in self.trt_functions:
                return True
            return self.is_trt(node.func, env)
        if isinstance(node, ast.Subscript):
            return self.is_trt(node.value, env)
        return False

    def run(self) -> Scan:
        # self.X = <TensorRT value> anywhere in a class makes self.X a TensorRT value in all its methods.
        for _ in range(3):
            for node in ast.walk(self.tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    env = self._params(node)
                    for stmt in ast.walk(node):
                        self._bind(stmt, env)
                        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                            value_trt = stmt.value is not None and self.is_trt(stmt.value, env)
                            ann_trt = isinstance(stmt, ast.AnnAssign) and self._mentions_trt(stmt.annotation)
                            for t in targets:
                                if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                                        and t.value.id == "self" and (value_trt or ann_trt)):
                                    self.self_attrs.add(t.attr)
        self._block(self.tree.body, ALL, set())
        return self.scan

    def _params(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
        args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        return {a.arg for a in args if a.annotation is not None and self._mentions_trt(a.annotation)}

    def _bind(self, stmt: ast.AST, env: set[str]) -> None:
        """Names that an assignment or loop binds to TensorRT values."""
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if self.is_trt(stmt.value, env) or (isinstance(stmt, ast.AnnAssign) and self._mentions_trt(stmt.annotation)):
                for t in targets:
                    env.update(_bound_names(t))
        elif isinstance(stmt, (ast.For, ast.comprehension)) and self.is_trt(stmt.iter, env):
            env.update(_bound_names(stmt.target))

    def _block(self, body: list[ast.stmt], versions: frozenset, env: set[str]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.If):
                cond = {v: _version_cond(stmt.test, VERSIONS[v]) for v in versions}
                self._expr(stmt.test, versions, env)
                self._block(stmt.body, frozenset(v for v in versions if cond[v] is not False), env)
                self._block(stmt.orelse, frozenset(v for v in versions if cond[v] is not True), env)
                if _terminates(stmt.body) and not stmt.orelse:
                    versions = frozenset(v for v in versions if cond[v] is not True)
                continue
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for deco in stmt.decorator_list:
                    self._expr(deco, versions, env)
                self._annotations(stmt, versions)
                self._block(stmt.body, versions, set(env) | self._params(stmt))
                continue
            if isinstance(stmt, ast.ClassDef):
                for base in stmt.bases:
                    self._expr(base, versions, env)
                self._block(stmt.body, versions, set(env))
                continue
            self._bind(stmt, env)
            for child in ast.iter_child_nodes(stmt):
                if isinstance(child, list):
                    continue
                if isinstance(child, ast.stmt):
                    continue
                self._expr(child, versions, env)
            for name in ("body", "orelse", "finalbody"):
                self._block(getattr(stmt, name, []) or [], versions, env)
            for handler in getattr(stmt, "handlers", []) or []:
                self._block(handler.body, versions, env)

    def _annotations(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, versions: frozenset) -> None:
        if self.lazy_annotations:  # never evaluated at run time: mypy checks them against the stubs
            return
        args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        for node in [a.annotation for a in args] + [fn.returns]:
            if node is not None:
                self._expr(node, versions, set())

    def _expr(self, node: ast.AST, versions: frozenset, env: set[str]) -> None:
        for comp in (n for n in ast.walk(node) if isinstance(n, ast.comprehension)):
            self._bind(comp, env)
        for n in ast.walk(node):
            if not isinstance(n, ast.Attribute):
                continue
            if isinstance(n.value, ast.Name) and n.value.id in self.aliases:
                self._record(n.attr, "module", versions, n)
            elif (isinstance(n.value, ast.Attribute) and isinstance(n.value.value, ast.Name)
                  and n.value.value.id in self.aliases):
                self._record(f"{n.value.attr}.{n.attr}", "qualified", versions, n)
                self._record(n.attr, "member", versions, n)
            elif self.is_trt(n.value, env) and not (
                isinstance(n.value, ast.Name) and n.value.id == "self"
            ):
                self._record(n.attr, "member", versions, n)

    def _record(self, name: str, kind: str, versions: frozenset, node: ast.AST) -> None:
        self.scan.uses.append(Use(name, kind, versions, getattr(node, "lineno", 0)))


def scan_source(source: str) -> Scan:
    return Checker(ast.parse(source)).run()


def scan_file(path: Path) -> Scan:
    return scan_source(path.read_text())


# ---------------------------------------------------------------------------------------------
# The project's TensorRT code


def test_vendored_lists_match_their_definition():
    # The common list is the intersection of 8.5..10.16, as its name says.
    assert api_names("common-8.5-to-10.16") == api_names("8.5") & API["8.6"] & API["10.3"] & API["10.16"]
    shared = REPO.parent / "shared" / "tensorrt"
    if shared.is_dir():  # the copy in test/data must be the project's current lists
        for f in API_DIR.glob("*.txt"):
            assert f.read_text() == (shared / f.name).read_text(), f"{f} differs from {shared / f.name}"


@pytest.mark.parametrize("key", sorted(TRT_FILES))
def test_every_tensorrt_name_exists_where_it_runs(key):
    path = TRT_FILES[key]
    scan = scan_file(path)
    problems = scan.problems(str(path.relative_to(REPO)))
    assert not problems, "\n".join(problems)


def test_the_checker_sees_the_calls_that_matter():
    backend = scan_file(TRT_FILES["backend"]).names()
    assert {"execute_async_v3", "set_input_shape", "set_tensor_address", "get_tensor_shape", "num_io_tensors",
            "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_profile_shape",
            "deserialize_cuda_engine", "create_execution_context", "Runtime", "TensorIOMode"} <= backend
    build = scan_file(TRT_FILES["build"])
    assert {"Builder", "OnnxParser", "create_network", "create_builder_config", "create_optimization_profile",
            "set_shape", "add_optimization_profile", "set_memory_pool_limit", "WORKSPACE", "build_serialized_network",
            "parse", "num_errors", "get_error", "set_flag", "set_timing_cache", "DLA_core", "set_device_type",
            "BuilderFlag.FP16", "BuilderFlag.INT8", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
            "NetworkDefinitionCreationFlag.STRONGLY_TYPED"} <= build.names()
    # One version branch: weakly typed with builder flags on 8.6, strongly typed from 10.
    for use in build.uses:
        if use.name in {"NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "BuilderFlag.FP16", "BuilderFlag.INT8",
                        "platform_has_fast_fp16"}:
            assert use.versions == WEAKLY_TYPED, use
        if use.name == "NetworkDefinitionCreationFlag.STRONGLY_TYPED":
            assert use.versions == STRONGLY_TYPED, use
    # No implicit calibration anywhere.
    assert not {"int8_calibrator", "set_calibration_profile", "IInt8EntropyCalibrator2"} & build.names()


# ---------------------------------------------------------------------------------------------
# The checker itself catches what it is for


def problems_of(source: str) -> list[str]:
    return scan_source(source).problems("snippet")


RUNTIME_SNIPPET = """
import tensorrt as trt
def run(path, stream):
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(open(path, "rb").read())
    context = engine.create_execution_context()
    context.{call}
"""


def test_checker_flags_apis_removed_in_tensorrt_10():
    assert problems_of(RUNTIME_SNIPPET.format(call="execute_async_v3(stream)")) == []
    found = problems_of(RUNTIME_SNIPPET.format(call="execute_async_v2([0, 0], stream)"))
    assert len(found) == 1 and "execute_async_v2" in found[0] and "10.3" in found[0]
    assert problems_of("import tensorrt as trt\ndef f(config: trt.IBuilderConfig):\n    config.max_workspace_size = 1\n")
    assert problems_of("import tensorrt\ndef f(engine: 'tensorrt.ICudaEngine'):\n    return engine.get_binding_index('x')\n")


def test_checker_follows_values_through_calls_subscripts_loops_and_self():
    src = """
import tensorrt as trt
class S:
    def __init__(self, engine):
        self._engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(engine)
    def f(self):
        for dims in self._engine.get_tensor_profile_shape("images", 0):
            dims.bogus_a
        ctx = self._engine.create_execution_context()
        [t.bogus_b for t in [ctx]]
        ctx.bogus_c()
"""
    found = "\n".join(problems_of(src))
    assert ".bogus_a" in found and ".bogus_c" in found and "bogus_b" not in found  # a list literal is not followed


def test_checker_honours_version_guards():
    flag = "flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)"
    unguarded = problems_of(f"import tensorrt as trt\n{flag}\n")
    assert any("['11.1']" in p and "EXPLICIT_BATCH" in p for p in unguarded)
    # 10.x still has EXPLICIT_BATCH (deprecated): the per-version rule refuses it there too.
    assert any("per-version rule" in p and "10.3" in p for p in unguarded)
    assert problems_of(f"import tensorrt as trt\nTRT_VERSION = (10, 3)\nif TRT_VERSION < (10, 0):\n    {flag}\n") == []
    # Guarded the wrong way round: the branch runs on 11.1, which has no EXPLICIT_BATCH.
    assert problems_of(f"import tensorrt as trt\nTRT_VERSION = ()\nif TRT_VERSION >= (11, 0):\n    {flag}\n")
    # An else branch gets the other versions; an early raise guards what follows it.
    src = """
import tensorrt as trt
TRT_VERSION = ()
def f(config):
    if TRT_VERSION >= (11, 0) and config:
        raise RuntimeError("strongly typed")
    config.set_flag(trt.BuilderFlag.FP16)
"""
    # `and config` may be false on 11.1 too, so the raise does not guard anything there.
    assert any("FP16" in p and "11.1" in p for p in problems_of(src))
    # Guarded for 11 only, FP16 still runs on 10.x, where the network is strongly typed.
    assert [p for p in problems_of(src.replace(" and config", "")) if "per-version rule" in p]
    assert problems_of(src.replace(" and config", "").replace("(11, 0)", "(10, 0)")) == []
    # Implicit calibration: refused on every version, guarded or not.
    assert problems_of("import tensorrt as trt\nTRT_VERSION = ()\nif TRT_VERSION >= (11, 0):\n    pass\n"
                       "else:\n    c = trt.IInt8EntropyCalibrator2\n")
    assert problems_of("import tensorrt as trt\ndef f(config: trt.IBuilderConfig):\n    config.int8_calibrator = None\n")
    assert problems_of("import tensorrt as trt\nx = trt.DataType.INT8\n") == []  # DataType.INT8 is no builder flag


def test_checker_flags_unknown_module_names():
    found = problems_of("import tensorrt as trt\nx = trt.nptype(trt.DataType.FLOAT)\n")
    assert len(found) == 1 and "trt.nptype" in found[0]


# ---------------------------------------------------------------------------------------------
# Imports


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, imported at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body} | {id(c) for n in tree.body if isinstance(n, ast.Try) for c in n.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, id(node) in top))
    return out


def test_import_rules():
    for path in PURE_FILES:
        bad = [m for m, _ in _imports(path) if m.split(".")[0] in ("tensorrt", "cuda", "pycuda", "torch")]
        assert not bad, f"{path.name} must stay plain Python, imports {bad}"
    backend = dict(_imports(TRT_FILES["backend"]))
    assert backend.get("tensorrt") is True and backend.get("cuda.bindings") is True
    for path in TRT_FILES.values():
        assert not [m for m, _ in _imports(path) if m.startswith("pycuda") or m.startswith("drn_perception.ros")], path
    # The runtime never builds: open_segmenter runs drn-build-engine as a process (test_switching.py).
    assert not [m for m, _ in _imports(TRT_FILES["backend"]) if m.startswith("drn_perception.deploy")]


def test_deploy_modules_import_without_heavy_packages():
    code = ("import sys, drn_perception.deploy.tensorrt_build, drn_perception.deploy.calibration, "
            "drn_perception.deploy.engine_meta; "
            "print([m for m in ('tensorrt', 'torch', 'cuda', 'onnxruntime', 'rclpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_create_segmenter_names_the_missing_packages(tmp_path):
    from drn_perception.inference import BackendUnavailable, create_segmenter

    engine = tmp_path / "model.trt10.3.0.orin-sm87.fp16.engine"
    engine.write_bytes(b"not opened: the backend is chosen before the file is read")
    with pytest.raises(BackendUnavailable) as err:
        create_segmenter(engine)
    assert "tensorrt" in str(err.value) and "cuda-python" in str(err.value)


# ---------------------------------------------------------------------------------------------
# drn-build-engine's command line (the parts that need no TensorRT)


@pytest.fixture
def exported(tmp_path):
    """An ONNX file and the model.json drn-export writes beside it (the CLI paths below read only the sidecar and hash the file)."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07" + os.urandom(64))
    cs = cityscapes()
    ModelInfo(arch="drn_c_26", classes=cs.classes, palette=cs.palette).write_json(
        sidecar_path(onnx), onnx_sha256=sha256_file(onnx), trained_synthetic_size=[256, 512])
    return onnx


def trtexec_lines(out: str) -> dict[str, list[str]]:
    """{"8.6": argv, "10.x and 11.x": argv} from --trtexec-only's output without TensorRT."""
    found, label = {}, None
    for line in out.splitlines():
        if line.startswith("TensorRT ") and line.endswith(":"):
            label = line[len("TensorRT "):-1]
        elif line.strip().startswith("trtexec "):
            found[label] = shlex.split(line)
    return found


def test_trtexec_command_per_typing(exported, capsys, tmp_path):
    engine = tmp_path / "out.engine"
    rc = tensorrt_build.main([str(exported), "--trtexec-only", "-o", str(engine), "--precision", "fp16",
                              "--shapes", "1x256x512/1x512x1024/2x1024x2048", "--workspace", "2048",
                              "--timing-cache", str(tmp_path / "t.cache"), "--dla-core", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = trtexec_lines(out)
    common = [f"--saveEngine={engine}", "--minShapes=images:1x256x512x3", "--optShapes=images:1x512x1024x3",
              "--maxShapes=images:2x1024x2048x3"]
    tail = ["--memPoolSize=workspace:2048", f"--timingCacheFile={tmp_path / 't.cache'}", "--useDLACore=1",
            "--allowGPUFallback"]
    fp16_graph = exported.with_name("model.trt-fp16.onnx")
    assert lines["8.6"] == ["trtexec", f"--onnx={exported}", *common, "--fp16", *tail]
    assert lines["10.x and 11.x"] == ["trtexec", f"--onnx={fp16_graph}", *common, "--stronglyTyped", *tail]
    assert f"drn-quantize {exported} --target tensorrt --quantize fp16 --out {fp16_graph}" in out
    assert f"--adopt {engine}" in out and "--precision fp16" in out


def test_trtexec_fp32_has_no_precision_flags(exported, capsys, tmp_path):
    assert tensorrt_build.main([str(exported), "--trtexec-only", "-o", str(tmp_path / "e.engine"),
                                "--precision", "fp32"]) == 0
    for argv in trtexec_lines(capsys.readouterr().out).values():
        assert not [a for a in argv if a in ("--fp16", "--int8") or a.startswith("--calib")]
        assert argv[1] == f"--onnx={tmp_path / 'model.onnx'}"


def test_default_profile_comes_from_the_sidecar_and_cameras(exported, capsys):
    assert tensorrt_build.main([str(exported), "--trtexec-only", "-o", "e.engine", "--precision", "fp32"]) == 0
    argv = trtexec_lines(capsys.readouterr().out)["8.6"]
    assert "--maxShapes=images:1x256x512x3" in argv  # the sidecar's trained size, one camera
    assert tensorrt_build.main([str(exported), "--trtexec-only", "-o", "e.engine", "--precision", "fp32",
                                "--cameras", "2", "--sizes", "480x640,720x1280"]) == 0
    argv = trtexec_lines(capsys.readouterr().out)["8.6"]
    assert {"--minShapes=images:1x480x640x3", "--optShapes=images:2x480x640x3",
            "--maxShapes=images:2x720x1280x3"} <= set(argv)


@pytest.mark.parametrize("args, words", [
    (["--shapes", "1x4x512/1x512x1024/4x1024x2048"], ["--shapes", "at least 8"]),
    (["--shapes", "4x512x1024/1x512x1024/4x1024x2048"], ["MIN <= OPT <= MAX"]),
    (["--shapes", "1x256x512"], ["MIN/OPT/MAX"]),
    (["--precision", "fp32", "--dla-core", "0"], ["--dla-core", "fp16"]),
    (["--precision", "fp16", "--calibration", "synthetic"], ["--calibration", "int8"]),
    (["--shapes", "1x256x512/1x512x1024/2x1024x2048", "--cameras", "2"], ["--shapes", "--cameras"]),
    (["--sizes", "640"], ["--sizes", "HxW"]),
    (["--cameras", "0"], ["--cameras"]),
    (["--workspace", "0"], ["--workspace"]),
    (["--device", "cpu"], ["CUDA"]),
])
def test_bad_options_are_one_line_errors(exported, capsys, args, words):
    assert tensorrt_build.main([str(exported), "--trtexec-only", "-o", "x.engine", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("drn-build-engine: error:")
    for w in words:
        assert w in err


def test_missing_sidecar_is_named(tmp_path, capsys):
    onnx = tmp_path / "bare.onnx"
    onnx.write_bytes(b"x")
    assert tensorrt_build.main([str(onnx)]) == 2
    assert "bare.json" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_building_without_tensorrt_says_what_to_install(exported):
    # A real process: one line on stderr, no traceback, non-zero exit.
    out = subprocess.run([sys.executable, "-m", "drn_perception.deploy.tensorrt_build", str(exported)],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensorrt" in lines[0] and "JetPack" in lines[0] and "Traceback" not in out.stderr


@pytest.mark.parametrize("request_", [
    BuildRequest(),
    BuildRequest("int8", "1x256x512x3/1x512x1024x3/2x1024x2048x3", 2048, 1, "t.cache", "/data/cam.bag"),
])
def test_rebuild_options_are_a_drn_build_engine_command_line(exported, request_):
    # open_segmenter starts `drn-build-engine ONNX <request.argv()> --device cuda:N -o ENGINE` as a process.
    args = tensorrt_build.make_arg_parser().parse_args([str(exported), *request_.argv(), "--device", "cuda:1"])
    got = BuildRequest(args.precision, args.shapes, args.workspace, args.dla_core,
                       None if args.timing_cache is None else str(args.timing_cache), args.calibration)
    assert got == request_ and args.device == "cuda:1"


def test_default_engine_name_is_what_the_trtexec_line_would_save(exported):
    env = RuntimeEnv("8.6.2.3", "Orin", "8.7")
    assert default_engine_path(exported, env, "fp16").name == "model.trt8.6.2.orin-sm87.fp16.engine"


# ---------------------------------------------------------------------------------------------
# mypy against tensorrt-stubs


def test_mypy_against_tensorrt_stubs():
    """tools/lint_tensorrt.sh: creates .lint-venv on first use (about 20 s), then mypy + the cudart name check."""
    script = REPO / "tools" / "lint_tensorrt.sh"
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=REPO, timeout=600)
    if out.returncode == 3:
        pytest.skip(f"the lint virtualenv could not be created here: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found in 4 source files" in out.stdout
