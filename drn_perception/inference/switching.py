"""Serve now, switch later: answer frames on one backend while a separate process produces a
better model file, then move to that model between two ``infer()`` calls.

A :class:`Producer` is an OS process that writes a model file (``drn-build-engine`` building a
TensorRT engine, ``drn-quantize`` writing an int8 graph, ...) plus the call that opens what it
wrote. :class:`SwitchingSegmenter` serves on the backend it was given and runs the producer on
a background thread; ``infer()`` never waits for it. When the process exits 0, the new model is
opened and checked on that thread (same classes, one warm-up frame at the size last served,
valid labels, optionally a minimum agreement with the serving model on that frame), and only
then does one assignment under a lock make it the serving model: every ``infer()`` call runs
whole on exactly one backend, none is refused or run twice, and none can see a half-opened
model. The wrapper then drops every reference it held to the old backend, so its memory is
freed once a call still running on it returns. A producer that fails, crashes or is killed,
and a model that fails its check, leave the old backend serving, with the reason in
:meth:`SwitchingSegmenter.status` (for logs and /diagnostics).
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from drn_perception.inference.base import SegmentationResult, Segmenter

STATES = ("serving", "building", "switching", "switched", "failed")
log = logging.getLogger(__name__)

# Producer processes still running, terminated when the interpreter exits (a node that stops
# while an engine builds must not leave the build running on its own). A node that is killed
# runs no exit handler: for that, each producer is started through die_with_parent.py, which has
# the kernel kill it when the thread that started it goes (see that file for why this way).
_RUNNING: "weakref.WeakSet[subprocess.Popen]" = weakref.WeakSet()
_DIE_WITH_PARENT = Path(__file__).with_name("die_with_parent.py")


@dataclass(frozen=True)
class Producer:
    """A separate process that writes a model file, and how to open that file once it has."""

    name: str  # "drn-build-engine": status()["producer"] and the prefix of its output lines in the log
    activity: str  # "building TensorRT engine": progress reads "<activity>, 312 s"
    command: tuple[str, ...]  # argv of the process
    opener: Callable[[], Segmenter]  # opens the written model (runs on the background thread)
    cwd: Path | None = None
    env: dict[str, str] | None = None  # None: this process's environment


class ProducerFailed(RuntimeError):
    """The producer could not be started, exited non-zero, was killed, or was cancelled."""


def terminate(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@atexit.register
def _terminate_running() -> None:
    for proc in list(_RUNNING):
        terminate(proc)


def run_producer(producer: Producer, logger: Any = log, progress_period: float = 30.0,
                 stop: threading.Event | None = None, tail: collections.deque | None = None) -> None:
    """Run ``producer.command`` to its end, logging its output lines and, every ``progress_period``
    seconds, "<activity>, N s". ProducerFailed with the reason (exit status or signal and the
    last line it printed) unless it exits 0; ``stop`` set: the process is terminated.

    The process is started and waited for on the calling thread, and on Linux it is killed by the
    kernel when that thread ends (die_with_parent.py), so it never outlives a node killed mid-run."""
    tail = tail if tail is not None else collections.deque(maxlen=20)
    command = list(producer.command)
    if not command:
        raise ProducerFailed(f"could not start {producer.name}: no command")
    exe = command[0]
    if (shutil.which(exe, path=(producer.env or os.environ).get("PATH")) if os.sep not in exe
            else os.access(Path(producer.cwd or ".") / exe, os.X_OK)) in (None, False):
        raise ProducerFailed(f"could not start {producer.name}: {exe}: no such executable")
    if sys.platform.startswith("linux"):
        # Killed with this thread's process, even by SIGKILL; this thread waits for it below.
        command = [sys.executable, "-I", "-S", str(_DIE_WITH_PARENT), str(os.getpid()), *command]
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", cwd=producer.cwd,
                                env=producer.env)
    except OSError as exc:
        raise ProducerFailed(f"could not start {producer.name}: {exc}") from None
    _RUNNING.add(proc)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                logger.info(f"[{producer.name}] {line}")

    reader = threading.Thread(target=read, name=f"{producer.name} output", daemon=True)
    reader.start()
    start = last_report = time.monotonic()
    try:
        while proc.poll() is None:
            if stop is not None and stop.wait(0.1):
                terminate(proc)
                raise ProducerFailed(f"{producer.name} was cancelled")
            if stop is None:
                try:
                    proc.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
            now = time.monotonic()
            if now - last_report >= progress_period:
                last_report = now
                logger.info(f"{producer.activity}, {now - start:.0f} s")
    finally:
        if proc.poll() is None:  # an exception on this thread: do not leave it running
            terminate(proc)
        _RUNNING.discard(proc)
    reader.join(5.0)
    if proc.stdout is not None:
        proc.stdout.close()
    rc = proc.returncode
    if rc == 0:
        return
    if rc < 0:
        try:
            how = f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            how = f"was killed by signal {-rc}"
    else:
        how = f"exited with status {rc}"
    last = f": {tail[-1]}" if tail else " without output"
    raise ProducerFailed(f"{producer.name} {how}{last}")


class SwitchingSegmenter(Segmenter):
    """Serves on ``serving`` until ``producer``'s model is written and checked, then on that model.

    logger: anything with ``info`` and ``warning`` (a ``logging.Logger``, rclpy's node logger).
    min_agreement: switch only if the new model's labels equal the serving model's on at least
    this fraction of the check frame's pixels (0: no such check; the agreement is reported).
    start: False to call :meth:`start` later.
    ``backend``, ``precision``, ``info``, ``path`` and ``device`` are the serving model's.
    """

    def __init__(self, serving: Segmenter, producer: Producer, *, logger: Any = None,
                 progress_period: float = 30.0, min_agreement: float = 0.0, start: bool = True):
        if not 0.0 <= min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be within 0..1, got {min_agreement}")
        self._current = serving
        self.producer = producer
        self._log = logger if logger is not None else log
        self._progress_period = progress_period
        self._min_agreement = min_agreement
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._tail: collections.deque = collections.deque(maxlen=20)
        self._state = "serving"
        self._reason = ""
        self._started: float | None = None
        self._finished: float | None = None
        self._frames = 0
        self._frames_before_switch: int | None = None
        self._previous = ""
        self._agreement: float | None = None
        self._last_batch: np.ndarray | None = None  # the last batch served: the check frame comes from it
        if start:
            self.start()

    # --------------------------------------------------------------- serving
    def infer(self, images: np.ndarray, want_confidence: bool = False) -> SegmentationResult:
        with self._lock:
            segmenter = self._current
            self._frames += 1
            keep = self._state in ("building", "switching", "serving")
        result = segmenter.infer(images, want_confidence)
        if keep:
            self._last_batch = images
        return result

    def _run(self, images: np.ndarray, want_confidence: bool) -> SegmentationResult:
        return self.infer(images, want_confidence)

    @property
    def serving(self) -> Segmenter:
        return self._current

    backend = property(lambda self: self._current.backend)  # type: ignore[assignment]
    precision = property(lambda self: self._current.precision)  # type: ignore[assignment]
    size_range = property(lambda self: self._current.size_range)  # type: ignore[assignment]
    info = property(lambda self: self._current.info)
    path = property(lambda self: self._current.path)
    device = property(lambda self: self._current.device)

    # --------------------------------------------------------------- the producer
    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"{self.producer.name} was already started")
            self._state = "building"
            self._started = time.monotonic()
            self._thread = threading.Thread(target=self._watch, name=f"{self.producer.name} watcher", daemon=True)
        self._log.info(f"serving on {self._current.describe()} while {self.producer.activity} in a separate process")
        self._thread.start()

    def _watch(self) -> None:
        p = self.producer
        try:
            run_producer(p, self._log, self._progress_period, self._stop, self._tail)
        except ProducerFailed as exc:
            self._fail(str(exc))
            return
        if self._stop.is_set():
            self._fail(f"{p.name} was cancelled")
            return
        with self._lock:
            self._state = "switching"
        try:
            new = p.opener()
        except Exception as exc:  # noqa: BLE001 - any backend's error: reported, old backend keeps serving
            self._fail(f"{p.name} finished but its model cannot be opened: {_one_line(exc)}")
            return
        try:
            problem = self._check(new)
        except Exception as exc:  # noqa: BLE001 - the new model failed on the warm-up frame
            problem = f"the new model failed on the check frame: {_one_line(exc)}"
        if problem:
            self._fail(f"{new.describe()} failed its check: {problem}")
            return
        if self._stop.is_set():
            self._fail(f"{p.name} was cancelled")
            return
        with self._lock:
            old = self._current
            self._current = new
            self._frames_before_switch = self._frames
            self._state = "switched"
            self._finished = time.monotonic()
            self._previous = old.describe()
            self._last_batch = None
        del old  # the last reference this object held: a call still running on it keeps it until it returns
        s = self.status()
        self._log.info(f"{s['message']} (after {s['frames_before_switch']} frames on {self._previous})")
        self._done.set()

    def _check(self, new: Segmenter) -> str | None:
        """Why ``new`` must not replace the serving model, or None; warms it up on one frame."""
        old = self._current
        if list(new.info.classes) != list(old.info.classes):
            return (f"it predicts {new.info.num_classes} classes ({', '.join(new.info.classes[:3])}, ...), the serving "
                    f"model {old.info.num_classes} ({', '.join(old.info.classes[:3])}, ...)")
        batch = self._last_batch
        if batch is not None:
            frame = np.array(np.asarray(batch)[-1:] if np.ndim(batch) == 4 else np.asarray(batch)[None])
        else:  # nothing served yet: a mid-grey frame at the smallest size engines are built for
            frame = np.full((1, 256, 512, 3), 128, np.uint8)
        labels = new.infer(frame).labels
        if labels.shape != frame.shape[:3] or labels.dtype != np.int32:
            return f"labels {labels.dtype} {labels.shape} for a {frame.shape} frame (expected int32 {frame.shape[:3]})"
        if labels.min() < 0 or labels.max() >= new.info.num_classes:
            return f"labels outside 0..{new.info.num_classes - 1} ({labels.min()}..{labels.max()})"
        agreement = float(np.mean(labels == old.infer(frame).labels))
        self._agreement = agreement
        if agreement < self._min_agreement:
            return (f"its labels equal the serving model's on {agreement:.1%} of the check frame, below "
                    f"min_agreement {self._min_agreement:.1%}")
        return None

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._state = "failed"
            self._reason = reason
            self._finished = time.monotonic()
            self._last_batch = None
        self._log.warning(self.status()["message"])
        self._done.set()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the producer's model serves or failed (or ``timeout``); the state then."""
        self._done.wait(timeout)
        return self._state

    def close(self) -> None:
        """Stop a producer still running (its partial output is not used) and the background thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # --------------------------------------------------------------- reporting
    def status(self) -> dict:
        """state (serving|building|switching|switched|failed), producer, message, elapsed_s,
        serving (describe() of the model answering now), backend, precision, reason (why it
        failed, else ""), frames (infer() calls so far), frames_before_switch, agreement."""
        with self._lock:
            state, reason, current = self._state, self._reason, self._current
            started, finished = self._started, self._finished
            frames, before, agreement = self._frames, self._frames_before_switch, self._agreement
        elapsed = 0.0 if started is None else (finished or time.monotonic()) - started
        p = self.producer
        serving = current.describe()
        message = {
            "serving": f"serving on {serving}; {p.activity} not started",
            "building": f"{p.activity}, {elapsed:.0f} s",
            "switching": f"{p.activity}: done, checking the new model ({elapsed:.0f} s)",
            "switched": f"switched to {serving} ({p.activity} took {elapsed:.0f} s)",
            "failed": f"{p.activity} failed after {elapsed:.0f} s, serving on {serving}: {reason}",
        }[state]
        return {
            "state": state,
            "producer": p.name,
            "message": message,
            "elapsed_s": round(elapsed, 1),
            "serving": serving,
            "backend": current.backend,
            "precision": current.precision,
            "reason": reason,
            "frames": frames,
            "frames_before_switch": before,
            "agreement": None if agreement is None else round(agreement, 4),
        }

    def describe(self) -> str:
        state = self._state
        serving = self._current.describe()
        if state in ("building", "switching"):
            return f"{serving}, {self.producer.activity} in a separate process"
        if state == "failed":
            return f"{serving} ({self.producer.activity} failed)"
        return serving


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
