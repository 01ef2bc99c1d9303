"""The diagnostics tools over MCP (in memory): triage, second reviews, consistency, suggestions, pass rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, prompt_text, simulated_responder
from conftest import snapshot
from test_server import fails, ok, seed

pytestmark = pytest.mark.anyio


def triage_or_verdict(body: dict[str, Any]) -> Reply:
    """Answers triage requests (their schema lists `cases`) by calling every case a rubric gap; else judges."""
    schema = body.get("response_format", {}).get("json_schema", {}).get("schema", {})
    if "cases" in schema.get("properties", {}):
        ids = schema["properties"]["cases"]["items"]["properties"]["run_id"]["enum"]
        cases = [
            {"run_id": rid, "category": "rubric_gap", "reason": "The rubric says nothing about tone."}
            for rid in ids
        ]
        return Reply(content=json.dumps({"cases": cases}))
    return simulated_responder(body)


async def test_triage_classifies_the_misaligned_dev_cases(client: Client, judge: FakeJudgeServer) -> None:
    await seed(client)
    await ok(client, "run_alignment", evaluator="correctness", prompt="v1")
    judge.responder = triage_or_verdict

    report = await ok(client, "triage_disagreements", evaluator="correctness")

    assert report["counts"]["rubric_gap"] == len(report["cases"]) > 0
    assert {c["category"] for c in report["cases"]} == {"rubric_gap"}
    triage_requests = [b for b in judge.chat_bodies if "cases" in json.dumps(b.get("response_format", {}))]
    assert len(triage_requests) == 1  # the misaligned dev cases fit one chunk
    assert report["cases"][0]["run_id"] in prompt_text(triage_requests[0])


async def test_a_second_review_is_requested_listed_and_adjudicated(
    client: Client, judge: FakeJudgeServer
) -> None:
    await seed(client)
    requested = await ok(
        client, "request_review", evaluator="correctness", run_ids=["pp-009"], reason="tone?"
    )
    assert requested["requested"] == ["pp-009"]

    listed = await ok(client, "list_reviews", evaluator="correctness")
    assert [(r["run_id"], r["status"]) for r in listed["reviews"]] == [("pp-009", "pending")]

    settled = await ok(
        client, "adjudicate_label", evaluator="correctness", run_id="pp-009", score=0, labeler="lead"
    )
    assert (settled["status"], settled["reference_score"]) == ("adjudicated", 0)


async def test_review_of_an_unknown_run_is_a_tool_error_and_changes_nothing(
    client: Client, judge: FakeJudgeServer, db_path: Path
) -> None:
    await seed(client)
    before = snapshot(db_path)
    message = await fails(client, "request_review", evaluator="correctness", run_ids=["nope-1"])
    assert "nope-1" in message
    assert snapshot(db_path) == before


async def test_consistency_reports_flips_and_refuses_k_below_two(
    client: Client, judge: FakeJudgeServer
) -> None:
    await seed(client)
    report = await ok(client, "check_consistency", evaluator="correctness", k=3, sample=4)
    assert (report["k"], report["n"], report["judge_calls"]) == (3, 4, 12)
    assert report["flip_rate"]["value"] == 0.0

    message = await fails(client, "check_consistency", evaluator="correctness", k=1)
    assert message == (
        "Error executing tool check_consistency: k=1 is not allowed: k takes a whole number from 2 to 20. Call "
        "check_consistency again with k fixed; nothing was done."
    )


async def test_suggestions_rank_queued_unlabeled_runs(client: Client, judge: FakeJudgeServer) -> None:
    await seed(client)
    fresh = [
        {"id": f"new-{i}", "inputs": {"question": f"q{i}"}, "outputs": {"answer": f"a{i}"}} for i in range(3)
    ]
    await ok(client, "import_runs", source="fresh", runs=fresh)
    await ok(client, "add_to_queue", evaluator="correctness", source="fresh")

    report = await ok(client, "suggest_labels", evaluator="correctness", n=2)

    assert report["candidates"] == 3
    assert len(report["suggestions"]) == 2
    assert all(s["run_id"].startswith("new-") and s["reason"] for s in report["suggestions"])


async def test_corrected_pass_rate_of_unlabeled_runs(client: Client, judge: FakeJudgeServer) -> None:
    await seed(client)
    fresh = [
        {"id": f"u-{i}", "inputs": {"question": "Is a helmet included?"}, "outputs": {"answer": "Yes, free."}}
        for i in range(10)
    ]
    await ok(client, "import_runs", source="prod", runs=fresh)

    report = await ok(client, "corrected_pass_rate", evaluator="correctness", source="prod")

    assert report["n_unlabeled"] == 10
    assert 0.0 <= report["ci"]["low"] <= report["corrected"] <= report["ci"]["high"] <= 1.0
    assert report["test_evaluations"] >= 1


async def test_corrected_pass_rate_over_too_few_runs_says_how_many_more_it_needs(
    client: Client, judge: FakeJudgeServer
) -> None:
    await seed(client)
    await ok(
        client, "import_runs", source="prod", runs=[{"id": "u-1", "inputs": {}, "outputs": {"a": "Yes."}}]
    )
    message = await fails(client, "corrected_pass_rate", evaluator="correctness", run_ids=["u-1"])
    assert message == (
        "Error executing tool corrected_pass_rate: Only 1 unlabeled run(s) to estimate the pass rate of; the corrected pass rate needs at least 10 (9 more), "
        "since an interval over fewer says nothing about the runs they stand for. Give more unlabeled runs: more "
        "ids, or a source with more of them."
    )
    assert judge.calls == 0


async def test_corrected_pass_rate_refuses_labeled_runs_only(client: Client, judge: FakeJudgeServer) -> None:
    await seed(client)
    message = await fails(client, "corrected_pass_rate", evaluator="correctness", run_ids=["pp-001"])
    assert "already have a human label" in message
