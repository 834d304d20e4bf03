"""What every drn-* command line shares: user errors are one line and exit 2, as argparse's own.

argparse reports a bad option as its usage (several lines) and ``prog: error: message`` with
exit status 2. The tools report every mistake of the user that way too, also those found after
parsing (a missing file, a bad value that only the tool can judge), but on one line: the usage
is one ``--help`` away, and one line is what a script's log or a CI summary shows.
"""
from __future__ import annotations

import argparse
import sys

USER_ERROR = 2  # argparse's exit status for a bad command line


class UserError(Exception):
    """A mistake in the command line or the files it names (printed as one line, exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are the one line ``prog: error: message``, exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(USER_ERROR, f"{self.prog}: error: {message}\n")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to an option's help once: not when the help already says its
    default, and not for defaults that mean "off" or "not given" (False, None)."""

    def _get_help_string(self, action):
        text = action.help or ""
        off = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or off or not action.option_strings:
            return text
        value = action.default
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
            value = f"{value[0]}x{value[1]}"  # sizes print as HxW, the way they are typed
        elif isinstance(value, (tuple, list)):
            value = " ".join(str(v) for v in value)
        return f"{text} (default: {value})" if text else f"(default: {value})"


def fail(prog: str, message, status: int = USER_ERROR) -> int:
    """Print ``prog: error: message`` on one line to stderr; return ``status`` for main()."""
    text = " ".join(line.strip() for line in str(message).strip().splitlines() if line.strip())
    print(f"{prog}: error: {text or type(message).__name__}", file=sys.stderr)
    return status
