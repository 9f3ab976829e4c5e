"""Wall time and peak memory of the non-slow suite, cold (empty store and cache) then warm (everything reused).

Run: ``python benchmarks/bench_suite.py [--marker "not slow"] [--json out.json]``.
Each run is a separate ``pytest`` process on a fresh temporary MLflow store and
cache directory, so "cold" really trains, attacks and generates patches, and
"warm" measures what reuse saves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_suite(workdir: Path, marker: str, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "pytest", str(REPO / "robustness_suites"), "-m", marker, "-q",
               "-p", "no:cacheprovider", f"--mlflow-uri=sqlite:///{workdir / 'mlflow.db'}",
               f"--robustness-cache-dir={workdir / 'cache'}", *extra]
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, text=True)
        # wait4 reaps this child and returns its own resource usage: its peak RSS, not the
        # maximum over every child so far (RUSAGE_CHILDREN), so cold and warm are told apart.
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().strip()
    tail = text.splitlines()[-1] if text else ""
    return {"seconds": seconds, "exit": child.returncode, "summary": tail,
            "peak_rss_mib": usage.ru_maxrss / 1024}  # KiB on Linux


def bench_suite(marker: str = "not slow", extra: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="robustness-bench-") as tmp:
        workdir = Path(tmp)
        cold = run_suite(workdir, marker, extra or [])
        warm = run_suite(workdir, marker, extra or [])
    return {"marker": marker, "cold": cold, "warm": warm, "warm_over_cold": warm["seconds"] / cold["seconds"],
            "peak_rss_mib": max(cold["peak_rss_mib"], warm["peak_rss_mib"])}


def print_suite(result: dict) -> None:
    cold, warm = result["cold"], result["warm"]
    print(f"suite -m {result['marker']!r}: cold {cold['seconds']:.1f} s ({cold['summary']}), "
          f"warm {warm['seconds']:.1f} s ({warm['summary']}), warm/cold {result['warm_over_cold']:.1%} "
          f"(target <= 15%: {'met' if result['warm_over_cold'] <= 0.15 else 'MISSED'}), "
          f"peak RSS cold {cold['peak_rss_mib']:.0f} MiB, warm {warm['peak_rss_mib']:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marker", default="not slow")
    parser.add_argument("--json", type=Path)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = bench_suite(args.marker, args.pytest_args)
    print_suite(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["cold"]["exit"] == 0 and result["warm"]["exit"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
