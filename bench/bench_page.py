"""The label page: keypress to the next run painted (p50/p95) on a 100,000-run queue, and what the page transfers.

Serves the real `align-mcp ui` process on a store whose queue holds 100,000 unlabeled runs, drives Debian's
Chromium with Playwright, and times inside the page from the keydown to the frame after the next run is in the
DOM (requestAnimationFrame then a zero timeout, so layout and paint are counted). Each press labels a run, which
goes through the engine's label write and reserves the next run. Transfer sizes are the responses' Content-Length (uncompressed bodies).

.venv/bin/python bench/bench_page.py            # 100,000 runs, 200 timed presses
.venv/bin/python bench/bench_page.py --quick    # 2,000 runs, 20 presses
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import BenchResult, Figure, at_most, machine, median, percentile, synthetic_runs  # noqa: E402

NAME = "page"
DESCRIPTION = "label page: keypress to next run painted p50/p95 on a 100k-run queue; transfer sizes"
CHROMIUM = "/usr/bin/chromium"

TIME_PRESS = """
(key) => new Promise((resolve) => {
  const body = document.body;
  const before = Number(body.dataset.renders || 0);
  const started = performance.now();
  const seen = new MutationObserver(() => {
    if (Number(body.dataset.renders || 0) > before && body.dataset.state === "ready") {
      seen.disconnect();
      requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - started), 0));
    }
  });
  seen.observe(body, { attributes: true });
  document.dispatchEvent(new KeyboardEvent("keydown", { key: key, bubbles: true }));
})
"""


def _store(db: Path, n: int) -> float:
    """A store with n unlabeled runs queued for the binary evaluator 'correctness'; returns seconds taken."""
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import evaluators, ingest, queues
    from align_mcp.store import open_store

    started = time.perf_counter()
    with open_store(db) as store:
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        for start in range(0, n, 10_000):
            ingest.import_runs(
                store, "bench", runs=synthetic_runs(min(10_000, n - start), start, labeled=False)
            )
        queues.add_to_queue(store, "correctness", source="bench")
    return time.perf_counter() - started


def _serve(db: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIGN_MCP_", "OPENAI_"))}
    env["ALIGN_MCP_DB"] = str(db)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "align-mcp"), "ui", "--port", "0", "--evaluator", "correctness"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " at http://" not in line:
        proc.kill()
        raise RuntimeError(
            f"align-mcp ui did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, line.split(" at ", 1)[1].split(" ", 1)[0]


def run(quick: bool = False, runs: int | None = None, presses: int | None = None) -> BenchResult:
    from playwright.sync_api import sync_playwright

    n = runs or (2_000 if quick else 100_000)
    count = presses or (20 if quick else 200)
    result = BenchResult(NAME)
    tmp = Path(tempfile.mkdtemp(prefix="bench-page-"))
    proc = None
    try:
        db = tmp / "align.db"
        seeded = _store(db, n)
        proc, url = _serve(db)
        sizes: dict[str, list[int]] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_context().new_page()

            def record(response: Any) -> None:
                path = response.url.split("?", 1)[0].removeprefix(url.rsplit("/label/", 1)[0])
                sizes.setdefault(path, []).append(int(response.headers.get("content-length") or 0))

            page.on("response", record)
            page.goto(url)
            page.fill("#labeler-name", "bench")
            page.press("#labeler-name", "Enter")
            page.wait_for_function("() => Number(document.body.dataset.renders || 0) > 0")
            first_load = {k: v[0] for k, v in sizes.items()}
            for _ in range(5):  # warm up: the first requests open the store and fill caches
                page.evaluate(TIME_PRESS, "1")
            sizes.clear()
            timings = [float(page.evaluate(TIME_PRESS, "1" if i % 3 else "0")) for i in range(count)]
            per_press = {k: sum(v) / len(v) for k, v in sizes.items()}
            browser.close()
        p95 = percentile(timings, 95)
        result.add(
            Figure(f"keypress to next run painted p50 ({n:,}-run queue)", median(timings), "ms"),
            Figure(
                f"keypress to next run painted p95 ({n:,}-run queue)",
                p95,
                "ms",
                target="≤ 50 ms",
                met=None if quick else at_most(p95, 50),
            ),
            Figure("first load: page + stylesheet + script + first run", sum(first_load.values()), "bytes"),
            Figure("per keypress: label + next run responses", round(sum(per_press.values())), "bytes"),
        )
        result.details = {
            "runs": n,
            "presses": count,
            "seed_seconds": round(seeded, 1),
            "first_load_bytes": first_load,
            "per_press_bytes": {k: round(v) for k, v in per_press.items()},
            "max_ms": round(max(timings), 1),
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2,000 runs and 20 presses: checks the bench code"
    )
    parser.add_argument("--runs", type=int, help="queue size (default 100,000)")
    parser.add_argument("--presses", type=int, help="timed keypresses (default 200)")
    args = parser.parse_args(argv)
    info = machine()
    print(f"label page bench on {info['cpu']}, {info['cores']} cores, Chromium {CHROMIUM}")
    result = run(args.quick, args.runs, args.presses)
    for f in result.figures:
        target = f"  target {f.target}" + ("" if f.met is None else ("  met" if f.met else "  NOT MET"))
        print(f"   {f.name:<60} {f.shown():>14}{target if f.target else ''}")
    print(json.dumps(result.details, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
