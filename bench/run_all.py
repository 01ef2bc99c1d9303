"""Run the benchmarks, print their figures and ratios, and write bench/results.json.

.venv/bin/python bench/run_all.py                 # everything (a few minutes)
.venv/bin/python bench/run_all.py --quick         # a fast smoke run with tiny sizes
.venv/bin/python bench/run_all.py align cache     # only some benches, by name
.venv/bin/python bench/bench_load.py --soak       # the shared server for 10 minutes: is its memory flat?
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult, machine  # noqa: E402

BENCHES = ["align", "cache", "startup", "store", "prefix", "context", "listing", "load", "compare", "fewshot"]


def _module(name: str) -> Any:
    return importlib.import_module(f"bench_{name}")


def print_table(results: list[BenchResult], quick: bool = False) -> None:
    width = max((len(f.name) for r in results for f in r.figures), default=40) + 2
    for r in results:
        print(f"\n== {r.name}  ({r.seconds:.1f} s)")
        if r.error:
            print(f"   FAILED: {r.error.strip().splitlines()[-1]}")
        for f in r.figures:
            verdict = "" if f.met is None or quick else ("  met" if f.met else "  NOT MET")
            target = f"  target {f.target}" if f.target else ""
            note = f"  ({f.note})" if f.note else ""
            print(f"   {f.name:<{width}} {f.shown():>16}{target}{verdict}{note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "benches", nargs="*", metavar="NAME", help=f"benches to run (default: all of {BENCHES})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the bench code, not the targets"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results.json", help="where to write the JSON results"
    )
    args = parser.parse_args(argv)
    unknown = [b for b in args.benches if b not in BENCHES]
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    names = args.benches or BENCHES
    info = machine()
    print(
        f"align-mcp benchmarks{' (quick)' if args.quick else ''} on {info['cpu']}, {info['cores']} cores, "
        f"Python {info['python']}, SQLite {info['sqlite']}"
    )
    results: list[BenchResult] = []
    for name in names:
        module = _module(name)
        print(f"-- {name}: {module.DESCRIPTION} ...", flush=True)
        started = time.perf_counter()
        try:
            result: BenchResult = module.run(quick=args.quick)
        except Exception:
            result = BenchResult(name, error=traceback.format_exc())
            print(result.error, file=sys.stderr)
        result.seconds = time.perf_counter() - started
        results.append(result)
    print_table(results, args.quick)
    if args.quick:
        print("\n(--quick: tiny sizes check that every bench runs; they say nothing about the targets)")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    # Each bench keeps the machine it was measured on: a partial run rewrites the top-level machine only.
    benches = {
        r.name: {**r.to_json(), "generated_at": now, "quick": args.quick, "machine": info} for r in results
    }
    if args.benches and args.out.exists():
        # A partial run updates its benches and keeps the others' latest figures.
        try:
            old = json.loads(args.out.read_text(encoding="utf-8"))
            previous = {k: {"generated_at": old.get("generated_at"), **v} for k, v in old["benches"].items()}
        except (OSError, ValueError, KeyError, AttributeError):
            previous = {}
        benches = {**{k: v for k, v in previous.items() if k not in benches}, **benches}
    payload = {
        "generated_at": now,
        "quick": args.quick,
        "machine": info,
        "benches": {name: benches[name] for name in BENCHES if name in benches},
    }
    args.out.write_text(
        json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    print(f"\nwrote {args.out}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
