"""Wall-clock of ``snn-lats ... --help`` (and of a refused flag) here against a checkout of
earlier code, side by side.

Each command runs as a fresh ``python -m snn_lats`` process in each source tree (ABBA order, so
neither always runs first); the medians and their ratio (before / now) are printed. ``--busy N``
keeps N busy-looping processes on this process's cores meanwhile, as on a shared node.

    git worktree add /tmp/before 5b6cb47          # the code before the lazy subpackages
    .venv/bin/python benchmarks/cli_startup.py --before /tmp/before
    .venv/bin/python benchmarks/cli_startup.py --before /tmp/before --busy 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    "--help",
    "train --help",
    "evaluate --help",
    "sops --help",
    "export --help",
    "compare --help",
    "train --lr inf",  # refused by the configuration's checks: exit 2
)
HERE = Path(__file__).resolve().parents[1]


def wall_time(tree: Path, command: str) -> float:
    start = time.perf_counter()
    # cwd first on sys.path: `-m snn_lats` imports the tree's package, not the installed one.
    done = subprocess.run([sys.executable, "-m", "snn_lats", *command.split()], cwd=tree, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 2):  # help, or a one-line refusal
        raise RuntimeError(f"{command!r} in {tree} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the earlier code")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command in each tree (default: 5)")
    parser.add_argument("--busy", type=int, default=0, help="busy processes on this process's cores (default: 0)")
    args = parser.parse_args(argv)
    if not (args.before / "snn_lats" / "__init__.py").is_file():
        parser.error(f"--before {str(args.before)!r} holds no snn_lats/ package")
    cores = sorted(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        for process in busy:
            os.sched_setaffinity(process.pid, cores)
        print(f"{platform.node()}: {len(cores)} cores, {args.busy} busy processes, {args.repeats} runs per tree")
        print(f"{'command':<18} {'before (s)':>10} {'now (s)':>8} {'before/now':>10}")
        for command in COMMANDS:
            times: dict[str, list[float]] = {"before": [], "now": []}
            for repeat in range(args.repeats):
                order = ("before", "now") if repeat % 2 == 0 else ("now", "before")
                for which in order:
                    times[which].append(wall_time(args.before if which == "before" else HERE, command))
            before, now = statistics.median(times["before"]), statistics.median(times["now"])
            print(f"{command:<18} {before:>10.2f} {now:>8.2f} {before / now:>9.1f}x")
    finally:
        for process in busy:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
