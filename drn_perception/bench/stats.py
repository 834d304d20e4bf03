"""drn-bench's numbers: timing summaries, paired speed-ups, label agreement, and this process's memory."""
from __future__ import annotations

import os
import resource
import sys
import threading

import numpy as np


# ----------------------------------------------------------------------------- statistics


def summarise(times: list[float]) -> dict[str, float]:
    """Median, 10th/90th percentiles, min, max and mean of ``times`` (seconds)."""
    if not times:
        raise ValueError("no timings to summarise")
    a = np.asarray(times, dtype=np.float64)
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return {"median": float(med), "p10": float(p10), "p90": float(p90), "min": float(a.min()),
            "max": float(a.max()), "mean": float(a.mean()), "n": int(a.size)}


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels whose labels are equal in ``a`` and ``b`` (same shape)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("empty label maps")
    return float(np.count_nonzero(a == b)) / a.size


def paired_speedup(ref: list[float], other: list[float]) -> float:
    """Median over rounds of ref_time / other_time: both measured in the same round."""
    n = min(len(ref), len(other))
    return float(np.median(np.asarray(ref[:n]) / np.asarray(other[:n])))


# ----------------------------------------------------------------------------- memory


def current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS drops."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssPeak:
    """Samples this process's RSS every few ms in a thread; ``.peak`` after the block."""

    def __init__(self, interval: float = 0.003):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.start = current_rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())

    @property
    def added_mib(self) -> float:
        return (self.peak - self.start) / 2**20

