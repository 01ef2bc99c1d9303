"""Shared pieces of the benchmarks: figures, timers, a fake judge in its own process, and seeded stores."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_RUNS = ROOT / "examples" / "support_runs.jsonl"
FAKE_KEY = "sk-bench-not-a-real-key"


@dataclass
class Figure:
    """One measured number. `target` is the issue's goal in words; `met` is None when there is no target."""

    name: str
    value: float | int | str | None
    unit: str = ""
    target: str | None = None
    met: bool | None = None
    note: str = ""

    def shown(self) -> str:
        v = self.value
        if v is None:
            return "n/a"
        if isinstance(v, float):
            if self.unit == "×":
                return f"{v:.3f}×"
            if self.unit == "%":
                return f"{v:.1f}%"
            return f"{v:,.3f} {self.unit}".rstrip() if abs(v) < 100 else f"{v:,.0f} {self.unit}".rstrip()
        if isinstance(v, int):
            return f"{v:,} {self.unit}".rstrip()
        return f"{v} {self.unit}".rstrip()


@dataclass
class BenchResult:
    name: str
    figures: list[Figure] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "figures": [asdict(f) for f in self.figures],
            "details": self.details,
        }


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "load_at_start": [round(x, 2) for x in load] if load else None,
    }


# ---- a fake judge in its own process -------------------------------------------------------------------------

_FAKE_JUDGE_PROCESS = r"""
import json, sys
from align_mcp.testing.fakejudge import FakeJudgeServer
srv = FakeJudgeServer(latency=float(sys.argv[1])).start()
print(json.dumps({"base_url": srv.base_url, "backlog": srv.request_queue_size}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "stats":
        print(json.dumps({"calls": srv.calls, "max_in_flight": srv.max_in_flight}), flush=True)
    elif cmd == "reset":
        with srv._lock:
            srv.calls = 0
            srv.max_in_flight = 0
            srv.requests.clear()
        print("{}", flush=True)
srv.stop()
"""


class JudgeProcess:
    """The project's fake judge with a fixed latency, served by a separate process.

    A separate process keeps the server's CPU out of the client's getrusage figures. Commands over stdin:
    `stats()` returns {calls, max_in_flight}; `reset()` zeroes them.
    """

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FAKE_JUDGE_PROCESS, str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        hello = json.loads(self.proc.stdout.readline())
        self.base_url: str = hello["base_url"]
        self.backlog: int = hello["backlog"]

    def _ask(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def stats(self) -> dict[str, Any]:
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> JudgeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- seeded data -------------------------------------------------------------------------------------------


def sample_runs() -> list[dict[str, Any]]:
    """The 46 labeled PedalPoint support runs shipped in examples/."""
    return [
        json.loads(line) for line in EXAMPLE_RUNS.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def synthetic_runs(n: int, start: int = 0, labeled: bool = True) -> list[dict[str, Any]]:
    """`n` support-style runs shaped like the sample data (about 400 bytes each), alternately pass and fail."""
    base = sample_runs()
    out = []
    for i in range(start, start + n):
        src = base[i % len(base)]
        run: dict[str, Any] = {
            "id": f"run-{i:07d}",
            "inputs": {"question": f"{src['inputs']['question']} (#{i})"},
            "outputs": src["outputs"],
            "reference_outputs": src.get("reference_outputs"),
            "metadata": {**src.get("metadata", {}), "n": i},
        }
        if labeled:
            run["feedback"] = {"correctness": {"score": i % 2, "comment": f"label {i}"}}
        out.append(run)
    return out


def checkpoint(db: Path) -> None:
    """Fold the WAL into the main file so the database can be copied as one file."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def copy_db(template: Path, dest: Path) -> Path:
    checkpoint(template)
    shutil.copyfile(template, dest)
    return dest


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (or with None, unset) environment variables for the duration."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Timer:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.wall0 = time.perf_counter()
        self.cpu0 = cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0
