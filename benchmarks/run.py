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
    print_targets(suite, phases)
    if args.json:
        args.json.write_text(json.dumps({"attacks": attacks, "suite": suite, "phases": phases}, indent=2, default=str))
    phases_ok = all(r["run"]["exit"] == 0 for r in phases.values())
    return 0 if attacks_ok and phases_ok and suite["cold"]["exit"] == 0 and suite["warm"]["exit"] == 0 else 1


MAIN_JOB_COLD_S = 150
WARM_S = 10
PGD_TRAINING_RATIO = 2
ADAPTIVE_RATIO = 2
PEAK_RSS_MIB = 1.6 * 1024


def print_targets(suite: dict, phases: dict) -> None:
    """One line per target of the main job's speed (issue 15), met or MISSED, with the number it is read from."""
    def line(name: str, value: float | None, target: str, met: bool | None) -> None:
        shown = "not measured" if value is None else value
        print(f"  {name}: {shown} (target {target}: {'-' if met is None else 'met' if met else 'MISSED'})")

    print("\ntargets (issue 15):")
    compiled, art = phases.get("compiled"), phases.get("art")
    cold = compiled["run"]["seconds"] if compiled else None
    line("main job cold, compiled", f"{cold:.0f} s" if cold else None, f"<= {MAIN_JOB_COLD_S} s",
         cold <= MAIN_JOB_COLD_S if cold else None)
    warm = suite["warm"]["seconds"]
    line("non-slow suite warm", f"{warm:.1f} s", f"<= {WARM_S} s", warm <= WARM_S)
    if compiled and art:
        for name in sorted(n for n in compiled["training"] if "_pgd_" in n):
            ours, theirs = compiled["training"][name], art["training"].get(name)
            ratio = theirs / ours if theirs and ours else None
            line(f"PGD training ({name.removeprefix('train ')}) ART/compiled", f"{ratio:.2f}x ({theirs:.1f} s / {ours:.1f} s)"
                 if ratio else None, f">= {PGD_TRAINING_RATIO}x at equal robustness",
                 ratio >= PGD_TRAINING_RATIO if ratio else None)
        for name in sorted(set(compiled["pgd_robustness"]) & set(art["pgd_robustness"])):
            print(f"    {name}: adaptive defended accuracy compiled {compiled['pgd_robustness'][name]:.3f}, "
                  f"ART {art['pgd_robustness'][name]:.3f}")
        ours, theirs = compiled["phases"].get("craft_adaptive"), art["phases"].get("craft_adaptive")
        ratio = theirs / ours if theirs and ours else None
        line("adaptive cells' crafting ART/compiled", f"{ratio:.2f}x ({theirs:.1f} s / {ours:.1f} s)" if ratio else None,
             f">= {ADAPTIVE_RATIO}x", ratio >= ADAPTIVE_RATIO if ratio else None)
    peak = compiled["run"]["peak_rss_mib"] if compiled else suite["peak_rss_mib"]
    line("peak RSS of the main job" if compiled else "peak RSS of the non-slow suite", f"{peak:.0f} MiB",
         f"<= {PEAK_RSS_MIB:.0f} MiB", peak <= PEAK_RSS_MIB)
    line("fresh clone to the first verdict", None, "< 5 min: .ci/run and the README's first command, timed by hand",
         None)


if __name__ == "__main__":
    raise SystemExit(main())
