"""Assistant context cost: characters the assistant receives from run_alignment plus the first get_misaligned page.

The sample data is copied three times (138 labeled runs); the fake judge contradicts the human on exactly 50
dev-split runs, so the run has 50 misaligned cases. Both tools are called through the MCP server with the
SDK's in-memory client, and what comes back is counted: the text content the model reads, and the structured
content alongside it. A second case pads every output to 6,000 characters to show that clipping bounds the
page, and that the page says how to get what was cut.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from _common import FAKE_KEY, BenchResult, Figure, at_most, env, sample_runs

NAME = "context"
DESCRIPTION = "characters returned to the assistant by run_alignment + the first get_misaligned page"
TARGET = 24_000
WRONG = 50
COPIES = 3
REASONING = (
    "The output states the grace period and the fee per started half hour. Comparing each figure with the "
    "reference output: the fee matches, and the output answers what the customer asked without adding claims "
    "the reference does not support. Nothing in it contradicts the reference, so it is correct."
)


def _runs(pad: int) -> list[dict[str, Any]]:
    out = []
    for c in range(COPIES):
        for run in sample_runs():
            copy = json.loads(json.dumps(run))
            copy["id"] = f"{run['id']}-c{c}"
            copy["inputs"]["question"] = f"{run['inputs']['question']} [{copy['id']}]"
            if pad:
                answer = copy["outputs"].get("answer", "")
                copy["outputs"]["answer"] = (answer + " ") * (pad // (len(answer) + 1) + 1)
            out.append(copy)
    return out


def _chars(result: Any) -> tuple[int, int]:
    """(text content characters, structured content characters as compact JSON) of a CallToolResult."""
    text = sum(len(getattr(c, "text", "") or "") for c in result.content)
    structured = len(json.dumps(result.structured_content)) if result.structured_content is not None else 0
    return text, structured


def _case(pad: int, work: Path) -> dict[str, Any]:
    from mcp import Client

    from align_mcp.core.models import ScoreType
    from align_mcp.engine import evaluators, holdout, ingest
    from align_mcp.mcp.server import create_server
    from align_mcp.store import Store
    from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, prompt_text, section

    db = work / f"context-{pad}.db"
    runs = _runs(pad)
    with Store(db) as store:
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        ingest.import_runs(store, "support", runs=runs)
        holdout.ensure_split(store, "correctness")
        dev = sorted(holdout.split_ids(store, "correctness", "dev"))
    human = {r["id"]: r["feedback"]["correctness"]["score"] for r in runs}
    wrong = set(dev[:: max(1, len(dev) // WRONG)][:WRONG])
    assert len(wrong) == WRONG, (len(dev), len(wrong))

    def responder(body: dict[str, Any]) -> Reply:
        inputs = section(prompt_text(body), "inputs") or ""
        match = re.search(r"\[([\w-]+-c\d)\]", inputs)
        rid = match.group(1) if match else ""
        score = human.get(rid, 1)
        return Reply(score=1 - score if rid in wrong else score, reasoning=REASONING)

    async def measure(base_url: str) -> dict[str, Any]:
        async with Client(create_server(db)) as client:
            report = await client.call_tool("run_alignment", {"evaluator": "correctness"})
            page = await client.call_tool("get_misaligned", {"evaluator": "correctness"})
        assert not report.is_error and not page.is_error, (report.content, page.content)
        return {"report": _chars(report), "page": _chars(page), "page_data": page.structured_content}

    with (
        FakeJudgeServer(responder=responder) as srv,
        env(
            ALIGN_MCP_JUDGE_BASE_URL=srv.base_url, ALIGN_MCP_JUDGE_API_KEY=FAKE_KEY, ALIGN_MCP_JUDGE_MODEL="m"
        ),
    ):
        out = anyio.run(measure, srv.base_url)
    return out


def run(quick: bool = False) -> BenchResult:
    result = BenchResult(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-context-") as tmp:
        for pad, label in ((0, "sample data"), (6000, "outputs padded to 6,000 chars")):
            out = _case(pad, Path(tmp))
            page = out["page_data"] or {}
            text_total = out["report"][0] + out["page"][0]
            all_total = text_total + out["report"][1] + out["page"][1]
            notes = " | ".join(page.get("notes", []))
            result.add(
                Figure(
                    f"{label}: run_alignment + first get_misaligned page, text content",
                    text_total,
                    "chars",
                    f"≤ {TARGET:,}",
                    at_most(text_total, TARGET),
                    note=f"≈ {text_total / 4:,.0f} tokens; {len(page.get('cases', []))} cases on the page",
                ),
                Figure(
                    f"{label}: the same with structured content",
                    all_total,
                    "chars",
                    note="if the host also shows structuredContent to the model",
                ),
                Figure(f"{label}: text / {TARGET:,} target", text_total / TARGET, "×"),
                Figure(
                    f"{label}: misaligned cases in the run",
                    page.get("total"),
                    "",
                    f"= {WRONG}",
                    page.get("total") == WRONG,
                ),
            )
            result.details[label] = {
                "run_alignment_text": out["report"][0],
                "run_alignment_structured": out["report"][1],
                "get_misaligned_text": out["page"][0],
                "get_misaligned_structured": out["page"][1],
                "page_notes": notes,
                "next_offset": page.get("next_offset"),
            }
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:80s} {f.shown()}  {f.note}")
    print(json.dumps(out.details, indent=1))
