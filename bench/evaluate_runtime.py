"""Time a whole-trace evaluation of every registered policy on the bundled GB trace.

The script runs `python -m engine.evaluate` with its defaults (three
flavours, target error 0.15, 24 h windows, flat demand, one evaluation per
slot) in a fresh process, so imports count too. It fails when the wall time
exceeds the budget (60 s by default, `--budget` to change).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0,
                        help="maximum wall time in seconds (default 60)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "engine.evaluate", "--out", out],
                                capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        print(f"evaluation failed with exit code {result.returncode}", file=sys.stderr)
        return 1

    print(result.stdout.strip())
    print(f"bench-evaluate: whole-trace evaluation of all policies took {seconds:.1f} s wall time "
          f"(budget {args.budget:.0f} s) on {platform.machine()} Python {platform.python_version()}")
    return 0 if seconds <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
