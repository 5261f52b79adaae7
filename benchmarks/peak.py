"""Wall time and peak memory of a command run in a process of its own.

Linux carries a process's resident high-water mark across fork and exec: a command started
straight from a benchmark that holds a large log reports the benchmark's memory as its own
peak whenever its own is smaller. So a small launcher (a Python process of some 10 MB) starts
the command and passes on its ``wait4`` peak; the figure is the command's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Runs argv[2:], writes its exit code and peak RSS (kB) to the file argv[1].
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(f'{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}')\n"
)


def timed(
    argv: Sequence[str], env: dict[str, str] | None = None
) -> tuple[float, float, str, str, int]:
    """Run ``argv``: wall seconds, its own peak RSS in MB, stdout, stderr and exit code."""
    with (
        tempfile.TemporaryDirectory(prefix="peak-") as folder,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        report = Path(folder) / "peak"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(report), *map(str, argv)],
            stdout=out,
            stderr=err,
            env={**os.environ, **(env or {})},
            check=True,
        )
        seconds = time.perf_counter() - start
        code, kilobytes = map(int, report.read_text().split())
        out.seek(0)
        err.seek(0)
        return seconds, kilobytes / 1024, out.read(), err.read(), code
