"""Run a command that dies with the process that started it, even when that process is killed
by SIGKILL and so never gets to stop it (Linux).

    python -I -S die_with_parent.py PARENT_PID COMMAND [ARG ...]

switching.run_producer starts every producer process (drn-build-engine, drn-quantize) through
this file, run by its path with the standard library only. It asks the kernel for SIGKILL when
its parent goes (prctl PR_SET_PDEATHSIG), checks that the parent is still PARENT_PID (had the
parent died between its fork and the prctl, no signal would ever come: then it exits at once),
and replaces itself with COMMAND (execvp). The setting survives execve for a program that is not
set-user-ID, so COMMAND itself is killed when the node dies, however the node dies.

Why this way:

* The kernel sends the signal when the *thread* that forked the child exits, not only the whole
  process. run_producer starts the process and waits for it on one thread until it has ended (a
  SwitchingSegmenter's watcher thread, or the caller's thread for a blocking build), so that
  thread outlives the process unless the whole parent dies, which is the case this is for.
* It is set here, after the fork, in a fresh interpreter, rather than in Popen's preexec_fn:
  preexec_fn runs Python code between fork and exec in the node, a process with threads (the
  executor, the producer's output reader), which Python's documentation calls unsafe (a lock
  another thread held at the fork stays held in the child).
* A pipe or parent pid that the child watches needs a watcher inside every command (a thread in
  drn-build-engine, whose TensorRT build may not return to Python for minutes); the kernel's
  signal needs nothing of the command. SIGKILL, not SIGTERM: the command may ignore or handle
  SIGTERM, and with its parent gone nobody uses what it writes (drn-build-engine writes the
  engine atomically: a killed build leaves no half engine under the engine's name).

Elsewhere than Linux there is no such signal: the command runs as it is, and the parent's atexit
handler (switching._terminate_running) is all that stops it on a normal exit.
"""
import os
import sys


def set_parent_death_signal(signal_number: int) -> bool:
    """prctl(PR_SET_PDEATHSIG, signal_number) for this process; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signal_number, 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def main(argv: list) -> int:
    if len(argv) < 3 or not argv[1].isdigit():
        print("usage: die_with_parent.py PARENT_PID COMMAND [ARG ...]", file=sys.stderr)
        return 2
    import signal

    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != int(argv[1]):  # the parent died before the prctl took effect
        return 1
    command = argv[2:]
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 1  # not reached: execvp returns only by raising


if __name__ == "__main__":
    sys.exit(main(sys.argv))
