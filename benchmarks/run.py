"""All benchmarks in one run: ART vs the compiled kernels, the non-slow suite cold vs warm, the main job by phase.

    python benchmarks/run.py [--quick]

Prints each pair with its ratio and the achieved attack strength beside it
(so a faster but weaker attack cannot pass unnoticed), and the suite's peak memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_phases import bench_phases, print_phases  # noqa: E402
from bench_suite import bench_suite, print_suite  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller patch budget, fewer repeats")
    parser.add_argument("--json", type=Path, help="write every number here too")
    parser.add_argument("--no-phases", action="store_true",
                        help="skip the main job's phases (two cold runs of every cell: the longest part)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        attacks_json = Path(tmp) / "attacks.json"
        command = [sys.executable, str(HERE / "bench_attacks.py"), "--json", str(attacks_json)]
        attacks_ok = subprocess.run(command + (["--quick"] if args.quick else [])).returncode == 0
        attacks = json.loads(attacks_json.read_text()) if attacks_ok else {}
    print("\n== the non-slow suite, cold (empty store and cache) then warm (everything reused)")
    suite = bench_suite("not slow")
    print_suite(suite)
    phases = {}
    if not args.no_phases:
        print("\n== the main job (every cell) cold, by phase, compiled kernels vs ART's classes")
        phases = bench_phases("not slow or slow", ["compiled", "art"])
        print_phases(phases)
    if args.json:
        args.json.write_text(json.dumps({"attacks": attacks, "suite": suite, "phases": phases}, indent=2, default=str))
    phases_ok = all(r["run"]["exit"] == 0 for r in phases.values())
    return 0 if attacks_ok and phases_ok and suite["cold"]["exit"] == 0 and suite["warm"]["exit"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
