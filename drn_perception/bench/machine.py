"""What a benchmark result must say about where it ran: CPU, cores, load, library versions."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata

# Instruction-set extensions that decide which fast paths exist on an x86 CPU.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16")
PACKAGES = ("numpy", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "openvino", "nncf", "tensorrt",
            "opencv-python-headless")


def cpu_model() -> str:
    """CPU model name (and x86 family/model numbers, which tell e.g. Zen 4 from Sapphire Rapids)."""
    fields = _cpuinfo()
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def isa_flags() -> list[str]:
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in ISA_FLAGS if f in flags]


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # first processor only
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def busy_processes(limit: int = 4, min_cpu: float = 20.0) -> list[str]:
    """Other processes using a lot of CPU right now ("95% python -m ..."), from ps."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,args=", "--sort=-pcpu"], capture_output=True,
                             text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or int(parts[0]) == os.getpid():
            continue
        cpu = float(parts[1])
        if cpu < min_cpu:
            break
        rows.append(f"{cpu:.0f}% {parts[2][:70]}")
        if len(rows) == limit:
            break
    return rows


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def gpu_name() -> str | None:
    """The CUDA device torch sees, if torch is already imported and has one."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def describe() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "isa": isa_flags(),
        "versions": versions(),
    }
