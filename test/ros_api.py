"""Every rclpy / launch / launch_ros name and keyword argument a source file uses, checked against
a distro's public API as read from its sources (shared/rclpy/<pkg>-api-<branch>.txt).

There are no Humble wheels: this is how Humble is checked. What is checked:
- every dotted name reached from an import of rclpy, launch or launch_ros exists on that branch
  (functions, classes, methods, re-exports; modules count when some name lives under them);
- every call of such a name: its positional count and keyword names against the signature;
- every call ``x.m(...)`` whose method name is a method of an rclpy class on the development
  branch (``self.create_subscription(..., raw=True)``, ``executor.shutdown(timeout_sec=0)``,
  ``sub.get_publisher_count()``, ``super().destroy_node()``), unless ``x`` comes from another
  package's import (``time.sleep``) or ``m`` is one of the package's own methods: some class
  on the checked branch must have ``m`` and accept the call.
A call inside ``if <name>:`` where <name> is one of distros.py's VERSION_BRANCHES is made only on
the distros that have it (the package branches on the version in that one place), so it is
checked against the development branch alone.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "rclpy"
ROOTS = ("rclpy", "launch", "launch_ros")
# Names of rclpy's compiled extension (rclpy.impl.implementation_singleton.rclpy_implementation):
# the lists hold Python sources only. Both exceptions are defined by _rclpy_pybind11 on humble,
# jazzy and rolling (src/rclpy/_rclpy_pybind11.cpp, exceptions.cpp).
COMPILED = {"rclpy.impl.implementation_singleton.rclpy_implementation",
            "rclpy.impl.implementation_singleton.rclpy_implementation.RCLError",
            "rclpy.impl.implementation_singleton.rclpy_implementation.RCLInvalidROSArgsError"}
# Module-level aliases of compiled enums, which the lists (functions, classes, methods) leave out;
# read in the sources of humble, jazzy and rolling: rclpy/signals.py and rclpy/lifecycle/__init__.py.
MODULE_ALIASES = {"rclpy.signals.SignalHandlerOptions", "rclpy.lifecycle.TransitionCallbackReturn"}


@dataclass
class Signature:
    positional: list[str]
    keyword_only: list[str]
    var_positional: bool
    var_keyword: bool

    def accepts(self, n_positional: int, keywords: list[str]) -> str | None:
        """None when a call with that many positional args and these keywords binds, else why not."""
        if n_positional > len(self.positional) and not self.var_positional:
            return f"takes at most {len(self.positional)} positional arguments, given {n_positional}"
        for kw in keywords:
            if kw not in self.positional[n_positional:] and kw not in self.keyword_only and not self.var_keyword:
                return f"has no parameter {kw!r}"
        return None


def parse_signature(params: str) -> Signature:
    sig = Signature([], [], False, False)
    keyword_only = False
    for p in filter(None, (p.strip() for p in params.split(","))):
        if p == "*":
            keyword_only = True
        elif p.startswith("**"):
            sig.var_keyword = True
        elif p.startswith("*"):
            sig.var_positional, keyword_only = True, True
        else:
            (sig.keyword_only if keyword_only else sig.positional).append(p.rstrip("="))
    return sig


@dataclass
class Api:
    branch: str
    names: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)
    signatures: dict[str, Signature] = field(default_factory=dict)
    methods: dict[str, list[str]] = field(default_factory=dict)  # method name -> "Class.method" names
    roots: set[str] = field(default_factory=set)  # the packages this branch has lists for

    def resolve(self, name: str) -> str:
        for _ in range(10):
            for prefix in sorted((a for a in self.aliases if name == a or name.startswith(a + ".")), key=len)[-1:]:
                name = self.aliases[prefix] + name[len(prefix):]
                break
            else:
                return name
        return name

    def exists(self, name: str) -> bool:
        name = self.resolve(name)
        return (name in self.names or name in COMPILED or name in MODULE_ALIASES
                or name.split(".")[0] not in self.roots or any(n.startswith(name + ".") for n in self.names))

    def signature(self, name: str) -> Signature | None:
        """The signature a call of ``name`` binds to: a function's or method's as listed (a method
        called on its class gets self passed), a class's __init__ without self."""
        name = self.resolve(name)
        if name in self.signatures:
            return self.signatures[name]
        init = self.signatures.get(name + ".__init__")
        return init and Signature(init.positional[1:], init.keyword_only, init.var_positional, init.var_keyword)


def load_api(branch: str) -> Api:
    api = Api(branch)
    for path in sorted(SHARED.glob(f"*-api-{branch}.txt")):
        api.roots.add(path.name.split("-api-")[0])
        for line in path.read_text().splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"(\S+) \(re-exported from (\S+)\)", line)
            if m:
                name, source = m.groups()
                parent, _, last = name.rpartition(".")
                if source == ".":
                    api.names.add(name)
                    continue
                if source.split(".")[0] in ROOTS:
                    target = f"{source}.{last}"
                elif source.startswith("."):
                    target = f"{parent}{source}.{last}"
                elif "." not in source and source not in ("typing", "enum", "abc", "collections", "types"):
                    target = f"{parent}.{source}.{last}"
                else:
                    target = f"{source}.{last}"  # outside the package: exists
                api.aliases[name] = target
                api.names.add(name)
                continue
            m = re.fullmatch(r"([\w.]+)\((.*)\)", line)
            name = m.group(1) if m else line.strip()
            api.names.add(name)
            if m:
                api.signatures[name] = parse_signature(m.group(2))
                owner, _, method = name.rpartition(".")
                if owner.rpartition(".")[2][:1].isupper():  # Class.method
                    api.methods.setdefault(method, []).append(name)
    if not api.names:
        raise FileNotFoundError(f"no API lists for branch {branch!r} in {SHARED}")
    return api


@dataclass
class Use:
    file: str
    line: int
    what: str
    problem: str

    def __str__(self):
        return f"{self.file}:{self.line}: {self.what}: {self.problem}"


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def own_methods(files) -> set[str]:
    """Method names the package's own classes define (calls of those are not rclpy's to check)."""
    out = set()
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.ClassDef):
                out |= {f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return out


def check_source(source: str, filename: str, api: Api, dev: Api, own: set[str],
                 version_branches: set[str] = frozenset()) -> list[Use]:
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> dotted rclpy/launch name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ROOTS:
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ROOTS:
            for a in node.names:
                bound[a.asname or a.name] = f"{node.module}.{a.name}"
    foreign = set()  # names imported from other packages (time, datetime, numpy): their methods are theirs
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            foreign |= {a.asname or a.name.split(".")[0] for a in node.names} - set(bound)
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id in version_branches:
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    problems = []

    def full(expr) -> str | None:
        dotted = _dotted(expr)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        if head not in bound:
            return None
        return bound[head] + ("." + rest if rest else "")

    for node in ast.walk(tree):
        target = api if id(node) not in guarded else dev
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ROOTS:
            for a in node.names:
                if not target.exists(f"{node.module}.{a.name}"):
                    problems.append(Use(filename, node.lineno, f"from {node.module} import {a.name}",
                                        f"not in {target.branch}"))
        elif isinstance(node, ast.Attribute) and not isinstance(getattr(node, "ctx", None), ast.Store):
            name = full(node)
            if name and not target.exists(name) and not _is_member_of_class(name, target):
                problems.append(Use(filename, node.lineno, name, f"not in {target.branch}"))
        if not isinstance(node, ast.Call):
            continue
        keywords = [k.arg for k in node.keywords if k.arg is not None]
        n_pos = sum(not isinstance(a, ast.Starred) for a in node.args)
        name = full(node.func)
        if name:
            sig = target.signature(name)
            why = sig and sig.accepts(n_pos, keywords)
            if why:
                problems.append(Use(filename, node.lineno, f"{name}(...)", f"{target.branch}'s {why}"))
            continue
        if not isinstance(node.func, ast.Attribute):
            continue
        method = node.func.attr
        via_super = (isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                     and node.func.value.func.id == "super")
        root = node.func.value
        while isinstance(root, (ast.Attribute, ast.Call)):
            root = root.func if isinstance(root, ast.Call) else root.value
        if (isinstance(root, ast.Name) and root.id in foreign) or method not in dev.methods or (
                method in own and not via_super):
            continue
        candidates = target.methods.get(method, [])
        if not candidates:
            problems.append(Use(filename, node.lineno, f".{method}(...)", f"no rclpy class has it in {target.branch}"))
            continue
        reasons = [target.signatures[c].accepts(n_pos + 1, keywords) for c in candidates]
        if all(reasons):
            problems.append(Use(filename, node.lineno, f".{method}(...)",
                                f"{target.branch}: " + "; ".join(f"{c} {r}" for c, r in zip(candidates, reasons))))
    return problems


def _is_member_of_class(name: str, api: Api) -> bool:
    """An enum member or class attribute (ReliabilityPolicy.RELIABLE): its class must exist."""
    owner = name.rpartition(".")[0]
    return owner.rpartition(".")[2][:1].isupper() and api.exists(owner)
