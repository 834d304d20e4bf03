"""Helpers of tools/lint_tensorrt.sh, run with the lint virtualenv's Python.

    python tools/lint_tensorrt.py patch-stubs      make the installed tensorrt-stubs usable by mypy
    python tools/lint_tensorrt.py check-cuda FILE  every cudart.X[.Y] that FILE uses exists in cuda-python
"""
from __future__ import annotations

import ast
import re
import sys
import sysconfig
from pathlib import Path


def patch_stubs() -> int:
    """tensorrt-stubs 10.13.0.35.1 lacks py.typed in the packages mypy reads, and its generated
    tensorrt.pyi has two kinds of syntax error: parameters named ``in`` (a keyword) and, in
    add_scale_nd, a parameter without default after ones with defaults. Both are patched, and
    the result must parse."""
    site = Path(sysconfig.get_paths()["purelib"])
    pyi = site / "tensorrt_bindings" / "tensorrt.pyi"
    if not pyi.is_file():
        print(f"lint: {pyi} not found: is tensorrt-stubs installed?", file=sys.stderr)
        return 1
    text = pyi.read_text()
    text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", text)
    text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")
    try:
        ast.parse(text, str(pyi))
    except SyntaxError as exc:
        print(f"lint: tensorrt-stubs still has a syntax error after patching: {exc}", file=sys.stderr)
        return 1
    pyi.write_text(text)
    for package in ("tensorrt", "tensorrt_bindings"):
        (site / package / "py.typed").touch()
    return 0


def cuda_names(path: Path) -> set[str]:
    """Dotted names used on the module imported as ``cudart`` (e.g. cudaMemcpyKind.cudaMemcpyHostToDevice)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def chain(node: ast.AST) -> list[str] | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "cudart":
            return parts[::-1]
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = chain(node)
            if parts:
                found.add(".".join(parts))
    # Keep only the longest chains (cudart.a.b also produced cudart.a).
    return {n for n in found if not any(o != n and o.startswith(n + ".") for o in found)}


def check_cuda(files: list[str]) -> int:
    from cuda.bindings import runtime

    missing = []
    total = 0
    for file in files:
        for name in sorted(cuda_names(Path(file))):
            total += 1
            obj = runtime
            for part in name.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    missing.append(f"{file}: cudart.{name}")
                    break
    if missing:
        print("lint: names not in cuda-python's runtime module:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    if total == 0:
        print("lint: found no cudart names at all; the check is not looking at the right code", file=sys.stderr)
        return 1
    print(f"lint: {total} cudart names used, all present in cuda-python's runtime module")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["patch-stubs"]:
        return patch_stubs()
    if argv[:1] == ["check-cuda"] and len(argv) > 1:
        return check_cuda(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
