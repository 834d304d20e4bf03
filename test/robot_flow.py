"""The README's robot install flow, read from README.md, for the robot lanes of ``make test``.

``python test/robot_flow.py --commands`` prints the flow's pip step (the lines of the ```bash block
under "## On a robot" that install Python packages), with ``src/drn_perception/`` made this
checkout, one command a line: tools/test_lane.sh runs exactly those in a lane's virtualenv, and
test_robot_install.py runs them again there and checks what they left. Standard library only:
it runs in a fresh lane before anything is installed.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKOUT = "src/drn_perception/"  # where the README's flow clones this repository, from ~/ros2_ws


def robot_block(readme: Path = REPO / "README.md") -> list[str]:
    """The command lines of the first ```bash block of the section "## On a robot"."""
    text = readme.read_text()
    section = re.search(r"^## On a robot.*?$(.*?)(?=^## )", text, re.S | re.M)
    if section is None:
        raise SystemExit("README.md has no section '## On a robot'")
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
    if block is None:
        raise SystemExit("README.md's '## On a robot' has no ```bash block")
    return [line for line in re.sub(r"\\\n\s*", " ", block.group(1)).splitlines() if shlex.split(line, comments=True)]


def pip_step(lines: list[str] | None = None) -> list[str]:
    """The flow's Python installs (lines that run pip), made to run from this checkout's root."""
    out = []
    for line in robot_block() if lines is None else lines:
        command = line.split(" #")[0].strip()
        if re.search(r"(^|\|\| )pip install ", command):
            out.append(command.replace(CHECKOUT, ""))
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--commands"]:
        raise SystemExit("usage: robot_flow.py --commands")
    print("\n".join(pip_step()))
