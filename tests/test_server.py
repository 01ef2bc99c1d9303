"""The MCP server in memory: every tool's happy path and errors, elicitation, progress, resources, the prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.server import MCPServer
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from align_mcp.testing.fakejudge import (
    FakeJudgeServer,
    Reply,
    prompt_text,
    section,
    simulated_responder,
    verdict,
)
from conftest import EXAMPLE_RUNS, snapshot

DESIGN_TOOLS = {
    "import_runs",
    "create_evaluator",
    "list_evaluators",
    "get_evaluator",
    "add_to_queue",
    "list_queues",
    "next_items",
    "submit_label",
    "submit_labels",
    "run_alignment",
    "get_misaligned",
    "update_draft",
    "save_prompt",
    "list_versions",
    "analyze_failures",
    "propose_prompt",
    "compare_models",
    "export_reference_set",
}

pytestmark = pytest.mark.anyio


class Labeler:
    """An elicitation callback standing in for the human: answers with a scripted action and content."""

    def __init__(self, action: str = "accept", content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = content
        self.requests: list[ElicitRequestParams] = []

    async def __call__(self, ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.requests.append(params)
        return ElicitResult(action=self.action, content=self.content)  # type: ignore[arg-type]


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


async def fails(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed: {result.structured_content}"
    return text(result)


async def seed(client: Client) -> None:
    """46 support runs with human `correctness` labels, and a binary evaluator that picks them up."""
    await ok(client, "import_runs", source="support", path=str(EXAMPLE_RUNS))
    await ok(client, "create_evaluator", name="correctness")


# ---- listing ------------------------------------------------------------------------------------------------


async def test_tools_carry_descriptions_output_schemas_and_annotations(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    diagnostics = {
        "triage_disagreements",
        "request_review",
        "adjudicate_label",
        "list_reviews",
        "check_consistency",
        "suggest_labels",
        "corrected_pass_rate",
    }
    extras = {"get_run", "pair_sources", "list_proposals", "apply_proposal", "alignment_chart", "judge_card"}
    assert DESIGN_TOOLS | extras | diagnostics == set(tools)
    for tool in tools.values():
        assert tool.description and not tool.description.startswith(" "), tool.name
        assert "\n    " not in tool.description, f"{tool.name}: docstring indentation leaked"
        assert tool.output_schema is not None, tool.name
        assert tool.title and tool.annotations is not None, tool.name
    read_only = {n for n, t in tools.items() if t.annotations and t.annotations.read_only_hint}
    assert read_only == {
        "list_evaluators",
        "get_evaluator",
        "list_queues",
        "get_misaligned",
        "list_versions",
        "get_run",
        "list_proposals",
        "list_reviews",
        "alignment_chart",
        "judge_card",
    }
    assert tools["update_draft"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert tools["run_alignment"].annotations.open_world_hint is True  # type: ignore[union-attr]
    assert tools["import_runs"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    # The score is optional so that clients without elicitation can pass it; the form is not an argument.
    label_args = tools["submit_label"].input_schema
    assert label_args["required"] == ["evaluator", "run_id"]
    assert "answer" not in label_args["properties"]


async def test_unknown_evaluator_errors_name_the_value_and_the_next_step(
    client: Client, db_path: Path
) -> None:
    await seed(client)
    before = snapshot(db_path)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_evaluator", {"name": "tone"}),
        ("add_to_queue", {"evaluator": "tone", "source": "support"}),
        ("next_items", {"evaluator": "tone"}),
        ("submit_label", {"evaluator": "tone", "run_id": "pp-001", "score": 1}),
        ("submit_labels", {"evaluator": "tone", "labels": [{"run_id": "pp-001", "score": 1}]}),
        ("run_alignment", {"evaluator": "tone"}),
        ("get_misaligned", {"evaluator": "tone"}),
        ("update_draft", {"evaluator": "tone", "prompt": "Judge {{outputs}}"}),
        ("save_prompt", {"evaluator": "tone"}),
        ("list_versions", {"evaluator": "tone"}),
    ]
    for tool, arguments in calls:
        message = await fails(client, tool, **arguments)
        assert (
            "No evaluator named 'tone'. Known: correctness. Create one with create_evaluator." in message
        ), tool
    assert snapshot(db_path) == before


# ---- runs in ------------------------------------------------------------------------------------------------


async def test_import_runs_from_a_file_reports_feedback_waiting_for_an_evaluator(client: Client) -> None:
    report = await ok(client, "import_runs", source="support", path=str(EXAMPLE_RUNS))
    assert report["inserted"] == 46
    assert report["unmatched_feedback_keys"] == ["correctness"]
    again = await ok(client, "import_runs", source="support", path=str(EXAMPLE_RUNS))
    assert (again["inserted"], again["skipped"]) == (0, 46)


async def test_import_runs_inline(client: Client) -> None:
    runs = [
        {"id": "a1", "inputs": {"q": "2+2?"}, "outputs": {"a": "4"}},
        {"inputs": {"q": "hi"}, "outputs": {}},
    ]
    report = await ok(client, "import_runs", source="inline", runs=runs, kind="project")
    assert (report["inserted"], report["kind"]) == (2, "project")


async def test_import_runs_errors_store_nothing(client: Client, db_path: Path, tmp_path: Path) -> None:
    await seed(client)
    before = snapshot(db_path)
    missing = tmp_path / "nope.jsonl"
    assert "nope.jsonl" in await fails(client, "import_runs", source="more", path=str(missing))
    assert "not both and not neither" in await fails(client, "import_runs", source="more")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": {"q": 1}, "outputs": {"a": 2}}\n{not json\n', encoding="utf-8")
    message = await fails(client, "import_runs", source="more", path=str(bad))
    assert "bad.jsonl:2:" in message
    assert "kind 'experiment'" in await fails(
        client, "import_runs", source="support", runs=[{}], kind="project"
    )
    assert snapshot(db_path) == before


async def test_get_run_returns_a_run_and_cuts_long_strings(client: Client, db_path: Path) -> None:
    long = "x" * 5000
    await ok(
        client, "import_runs", source="s", runs=[{"id": "r1", "inputs": {"q": long}, "outputs": {"a": "ok"}}]
    )
    run = await ok(client, "get_run", run_id="r1")
    assert run["inputs"]["q"] == long and run["notes"] == []
    short = await ok(client, "get_run", run_id="r1", max_chars=1000)
    assert short["inputs"]["q"].startswith("x" * 1000 + "… [4000 more characters]")
    assert short["notes"] == [
        "Strings were cut at 1000 characters; the longest has 5000. get_run(run_id='r1', max_chars=5000) "
        "returns it in full."
    ]
    assert "No run with id 'r9'" in await fails(client, "get_run", run_id="r9")


# ---- evaluators ---------------------------------------------------------------------------------------------


async def test_create_evaluator_picks_up_imported_labels(client: Client) -> None:
    await seed(client)
    queues = (await ok(client, "list_queues"))["queues"]
    assert [(q["evaluator"], q["labeled"]) for q in queues] == [("correctness", 46)]
    assert queues[0]["balance"]["counts"] == {"0": 18, "1": 28}


async def test_create_evaluator_ordinal_with_judge_settings(client: Client) -> None:
    ev = await ok(
        client,
        "create_evaluator",
        name="helpfulness",
        score_type="ordinal",
        min=1,
        max=5,
        judge={"model": "small-judge", "temperature": 0.2},
        description="How helpful the answer is",
    )
    assert ev["score_type"] == {"kind": "ordinal", "labels": None, "min": 1, "max": 5}
    assert ev["judge"]["model"] == "small-judge"
    assert ev["versions"][0]["version"] == 1 and not ev["draft_differs"]


async def test_create_evaluator_errors_store_nothing(client: Client, db_path: Path) -> None:
    await seed(client)
    before = snapshot(db_path)
    assert "already exists" in await fails(client, "create_evaluator", name="correctness")
    assert "at least two labels" in await fails(
        client, "create_evaluator", name="tone", score_type="categorical"
    )
    assert "min < max" in await fails(
        client, "create_evaluator", name="tone", score_type="ordinal", min=5, max=1
    )
    assert "'bad name!' is not allowed" in await fails(client, "create_evaluator", name="bad name!")
    message = await fails(client, "create_evaluator", name="tone", prompt="Is this polite?")
    assert "{{outputs}}" in message
    assert snapshot(db_path) == before


async def test_list_and_get_evaluators(client: Client) -> None:
    empty = await ok(client, "list_evaluators")
    assert empty == {"evaluators": [], "notes": ["No evaluators yet. Create one with create_evaluator."]}
    await seed(client)
    listed = (await ok(client, "list_evaluators"))["evaluators"]
    assert listed[0]["name"] == "correctness" and listed[0]["latest_version"] == 1
    assert "draft" not in listed[0]
    ev = await ok(client, "get_evaluator", name="correctness")
    assert "{{outputs}}" in ev["draft"]
    assert ev["queue"]["labeled"] == 46
    assert ev["recent_alignment_runs"] == []


# ---- queues and labels --------------------------------------------------------------------------------------


async def test_queue_next_items_and_label_with_a_score(client: Client) -> None:
    await seed(client)
    await ok(client, "create_evaluator", name="tone", score_type="ordinal", min=1, max=5)
    added = await ok(
        client, "add_to_queue", evaluator="tone", source="support", sample=6, stratify_by="topic"
    )
    assert (added["added"], added["pending"]) == (6, 6)
    page = await ok(client, "next_items", evaluator="tone", labeler="dana", limit=2, max_chars=200)
    assert len(page["items"]) == 2 and page["score_type"] == "ordinal (1..5)"
    assert "submit_label(evaluator='tone'" in page["notes"][0]
    run_id = page["items"][0]["run_id"]
    other = await ok(client, "next_items", evaluator="tone", labeler="eve", limit=6)
    assert run_id not in {item["run_id"] for item in other["items"]}  # reserved for dana
    stored = await ok(
        client, "submit_label", evaluator="tone", run_id=run_id, score=4, comment="Friendly", labeler="dana"
    )
    assert stored["status"] == "stored"
    assert stored["receipt"] == {
        "evaluator": "tone",
        "run_id": run_id,
        "score": 4,
        "relabeled": False,
        "labeled": 1,
        "pending": 5,
        "disputed": False,
        "notes": [],
    }
    assert "label at least 20" in stored["balance"]["warnings"][0]


async def test_next_items_on_an_empty_queue_says_how_to_fill_it(client: Client) -> None:
    await seed(client)
    page = await ok(client, "next_items", evaluator="correctness")
    assert page["items"] == []
    assert page["notes"] == [
        "Nothing left to label in this queue. Queue runs with add_to_queue(evaluator='correctness'); a human "
        "then labels them with next_items and submit_label."
    ]


async def test_add_to_queue_errors(client: Client, db_path: Path) -> None:
    await seed(client)
    before = snapshot(db_path)
    assert "No source named 'web'. Known: support" in await fails(
        client, "add_to_queue", evaluator="correctness", source="web"
    )
    assert "Say which runs to queue" in await fails(client, "add_to_queue", evaluator="correctness")
    message = await fails(client, "add_to_queue", evaluator="correctness", run_ids=["pp-001", "zz-9"])
    assert message == (
        "Error executing tool add_to_queue: 1 run id(s) are not in the store: 'zz-9'. Import runs with import_runs."
    )
    assert snapshot(db_path) == before


async def test_label_errors_name_the_bad_value_and_store_nothing(client: Client, db_path: Path) -> None:
    await seed(client)
    before = snapshot(db_path)
    message = await fails(client, "submit_label", evaluator="correctness", run_id="pp-003", score="maybe")
    assert "Score 'maybe' is not valid for a binary evaluator; use 1 (pass) or 0 (fail)." in message
    message = await fails(client, "submit_label", evaluator="correctness", run_id="pp-003", score=0.5)
    assert "Score 0.5 is not valid" in message
    message = await fails(client, "submit_label", evaluator="correctness", run_id="zz-9", score=1)
    assert "no run with id 'zz-9'" in message
    labels = [{"run_id": "pp-001", "score": 1}, {"run_id": "pp-002", "score": 7}]
    message = await fails(client, "submit_labels", evaluator="correctness", labels=labels)
    assert "Label 2 (run 'pp-002'): Score 7 is not valid" in message
    assert snapshot(db_path) == before


async def test_submit_labels_stores_all_and_reports_balance(client: Client) -> None:
    await seed(client)
    labels = [
        {"run_id": "pp-001", "score": "fail", "comment": "Wrong grace period"},
        {"run_id": "pp-003", "score": 1},
    ]
    result = await ok(client, "submit_labels", evaluator="correctness", labels=labels, labeler="dana")
    assert (result["stored"], result["labeled"]) == (2, 46)
    assert result["relabeled"] == 2  # both had a label from the import; the history keeps it
    assert result["balance"]["total"] == 46


# ---- labels via elicitation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode", ["auto", "legacy"]
)  # input_required round trips (2026-07-28) / pushed request
async def test_submit_label_without_score_asks_the_human_in_a_form(server: MCPServer[Any], mode: str) -> None:
    human = Labeler(content={"score": "fail", "comment": "Wrong opening hours"})
    async with Client(server, cache=None, elicitation_callback=human, mode=mode) as client:  # type: ignore[arg-type]
        await seed(client)
        result = await ok(client, "submit_label", evaluator="correctness", run_id="pp-003", labeler="dana")
    assert result["status"] == "stored"
    assert result["receipt"]["score"] == 0 and result["receipt"]["relabeled"] is True
    [request] = human.requests
    assert request.message.startswith(
        "Label run pp-003 for evaluator 'correctness' (binary (0 = fail, 1 = pass))."
    )
    assert "Can I bring my small dog along on the ride?" in request.message  # the run's input
    assert "front basket" in request.message  # its output
    assert "Rubric:" in request.message  # what the judge checks
    schema = request.requested_schema  # type: ignore[union-attr]
    assert schema["properties"]["score"]["enum"] == ["pass", "fail"]
    assert schema["required"] == ["score"]


async def test_elicitation_form_follows_the_score_type(server: MCPServer[Any]) -> None:
    human = Labeler(content={"score": "ok"})
    async with Client(server, cache=None, elicitation_callback=human) as client:
        await seed(client)
        await ok(
            client, "create_evaluator", name="quality", score_type="categorical", labels=["good", "ok", "bad"]
        )
        result = await ok(client, "submit_label", evaluator="quality", run_id="pp-001")
        assert result["receipt"]["score"] == "ok"
        await ok(client, "create_evaluator", name="tone", score_type="ordinal", min=1, max=5)
        human.content = {"score": 4, "comment": ""}
        result = await ok(client, "submit_label", evaluator="tone", run_id="pp-001")
        assert result["receipt"]["score"] == 4
    categorical, ordinal = (r.requested_schema["properties"]["score"] for r in human.requests)  # type: ignore[union-attr]
    assert categorical["enum"] == ["good", "ok", "bad"]
    assert (ordinal["type"], ordinal["minimum"], ordinal["maximum"]) == ("integer", 1, 5)


@pytest.mark.parametrize(("action", "status"), [("decline", "declined"), ("cancel", "cancelled")])
async def test_a_declined_or_cancelled_form_stores_nothing(
    server: MCPServer[Any], db_path: Path, action: str, status: str
) -> None:
    human = Labeler(action=action)
    async with Client(server, cache=None, elicitation_callback=human) as client:
        await seed(client)
        before = snapshot(db_path)
        result = await ok(client, "submit_label", evaluator="correctness", run_id="pp-003")
    assert result["status"] == status and result["receipt"] is None
    assert "nothing was stored" in result["message"]
    assert len(human.requests) == 1
    assert snapshot(db_path) == before


async def test_a_client_without_forms_is_told_to_pass_the_score(client: Client, db_path: Path) -> None:
    await seed(client)
    before = snapshot(db_path)
    message = await fails(client, "submit_label", evaluator="correctness", run_id="pp-003")
    assert "cannot show a form" in message and "call submit_label again with score" in message
    assert snapshot(db_path) == before
    # ...and with the score it needs no form at all.
    stored = await ok(client, "submit_label", evaluator="correctness", run_id="pp-003", score="pass")
    assert stored["receipt"]["score"] == 1


async def test_the_form_is_not_shown_for_an_unknown_run(server: MCPServer[Any]) -> None:
    human = Labeler(content={"score": "pass"})
    async with Client(server, cache=None, elicitation_callback=human) as client:
        await seed(client)
        message = await fails(client, "submit_label", evaluator="correctness", run_id="zz-9")
    assert "No run with id 'zz-9'" in message
    assert human.requests == []


# ---- alignment ----------------------------------------------------------------------------------------------


async def test_run_alignment_reports_metrics_progress_and_the_comparison(
    client: Client, judge: FakeJudgeServer
) -> None:
    await seed(client)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    first = await client.call_tool(
        "run_alignment", {"evaluator": "correctness"}, progress_callback=on_progress
    )
    assert not first.is_error, text(first)
    report = first.structured_content
    assert report is not None
    metrics = report["run"]["metrics"]
    assert report["run"]["status"] == "completed" and metrics["n"] == report["run"]["total"]
    assert metrics["kappa"] is not None and metrics["agreement"]["ci"] is not None
    assert text(first).startswith(f"# Alignment run {report['run']['id']}: correctness draft\n")
    assert "The draft is identical to v1" in text(first)
    assert "| Cohen's κ |" in text(first) and "95% CI" in text(first)
    values = [v for v, _, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values), "progress must increase"
    assert progress[-1][0] == progress[-1][1]
    assert judge.calls == report["run"]["total"]  # no second run of the same prompt to compare with

    await ok(
        client,
        "update_draft",
        evaluator="correctness",
        find="Think step by step",
        replace_with="Check every price, time and number against the reference output. Think step by step",
    )
    second = await ok(client, "run_alignment", evaluator="correctness")
    assert second["baseline"]["prompt_ref"] == "v1"
    assert second["flips"]["fixed"], "the numbers rule fixes the wrong-number examples"
    assert second["run"]["metrics"]["agreement"]["value"] > metrics["agreement"]["value"]

    evaluator = await ok(client, "get_evaluator", name="correctness")
    recent = [(r["id"], r["prompt_ref"]) for r in evaluator["recent_alignment_runs"]]
    assert (second["run"]["id"], "draft") in recent and (second["baseline"]["id"], "v1") in recent


async def test_run_alignment_on_a_saved_version_and_split(client: Client, judge: FakeJudgeServer) -> None:
    await seed(client)
    report = await ok(
        client, "run_alignment", evaluator="correctness", prompt="v1", split="all", compare=False
    )
    assert report["run"]["prompt_ref"] == "v1" and report["run"]["split"] == "all"
    assert report["baseline"] is None
    assert "is not 'draft', 'latest'" in await fails(
        client, "run_alignment", evaluator="correctness", prompt="best"
    )
    assert "has no version 9" in await fails(client, "run_alignment", evaluator="correctness", prompt="v9")


async def test_run_alignment_without_a_judge_model_says_what_to_set(
    client: Client, judge: FakeJudgeServer, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(client)
    monkeypatch.delenv("ALIGN_MCP_JUDGE_MODEL")
    before = snapshot(db_path)
    message = await fails(client, "run_alignment", evaluator="correctness")
    assert "No judge model is configured. Set ALIGN_MCP_JUDGE_MODEL" in message
    assert snapshot(db_path) == before
    assert judge.calls == 0


async def test_run_alignment_with_no_labels_says_how_to_get_them(
    client: Client, judge: FakeJudgeServer, db_path: Path
) -> None:
    await ok(client, "create_evaluator", name="tone", score_type="ordinal", min=1, max=5)
    before = snapshot(db_path)
    message = await fails(client, "run_alignment", evaluator="tone")
    assert message == (
        "Error executing tool run_alignment: Evaluator 'tone' has no labeled runs, so there is nothing to align "
        "against. Label at least 20, of both classes. Queue runs with add_to_queue(evaluator='tone'); a human "
        "then labels them with next_items and submit_label."
    )
    assert snapshot(db_path) == before


async def test_cancelled_alignment_keeps_finished_results_and_resumes(
    client: Client, judge: FakeJudgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(client)
    monkeypatch.setenv("ALIGN_MCP_CONCURRENCY", "1")
    slow_after = 3
    judge.push(*[verdict(1) for _ in range(slow_after)])
    judge.responder = lambda body: Reply(score=1, delay=0.5)
    with anyio.fail_after(20):
        with anyio.CancelScope() as scope:

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                if value >= slow_after:
                    scope.cancel()

            await client.call_tool(
                "run_alignment", {"evaluator": "correctness"}, progress_callback=on_progress
            )
        assert scope.cancelled_caught
    runs = (await ok(client, "get_evaluator", name="correctness"))["recent_alignment_runs"]
    [interrupted] = runs
    assert interrupted["status"] == "interrupted"
    assert interrupted["judged"] >= slow_after
    assert interrupted["judged"] < interrupted["total"]

    judge.responder = None  # fast pass verdicts from here on
    with anyio.fail_after(20):
        resumed = await ok(client, "run_alignment", evaluator="correctness", resume=interrupted["id"])
    assert resumed["run"]["id"] == interrupted["id"]
    assert resumed["run"]["status"] == "completed"
    assert resumed["run"]["judged"] == resumed["run"]["total"]
    assert resumed["run"]["requests"] >= resumed["run"]["total"] - interrupted["judged"]
    assert "No alignment run 999" in await fails(client, "run_alignment", evaluator="correctness", resume=999)


async def test_get_misaligned_pages_through_cases(client: Client, judge: FakeJudgeServer) -> None:
    await seed(client)
    report = await ok(client, "run_alignment", evaluator="correctness")
    run_id = report["run"]["id"]
    page = await ok(client, "get_misaligned", evaluator="correctness", limit=2, max_chars=200)
    total = page["total"]
    assert total > 2 and page["alignment_run"] == run_id
    case = page["cases"][0]
    assert {"inputs", "outputs", "human_score", "human_comment", "judge_score", "judge_reasoning"} <= set(
        case
    )
    assert page["next_offset"] == 2
    assert page["notes"][-1] == (
        f"{total - 2} more from offset 2. The next page: get_misaligned(evaluator='correctness', "
        f"alignment_run={run_id}, offset=2)."
    )
    rest = await ok(client, "get_misaligned", evaluator="correctness", offset=2, limit=20)
    assert len(rest["cases"]) == total - 2 and rest["next_offset"] is None
    fails_only = await ok(client, "get_misaligned", evaluator="correctness", direction="false_pass", limit=20)
    assert {c["direction"] for c in fails_only["cases"]} <= {"false_pass"}
    assert await fails(client, "get_misaligned", evaluator="correctness", alignment_run=999) == (
        "Error executing tool get_misaligned: No alignment run 999. get_evaluator lists an evaluator's recent "
        "alignment runs."
    )


async def test_get_misaligned_before_any_run_says_to_run_alignment(client: Client) -> None:
    await seed(client)
    assert await fails(client, "get_misaligned", evaluator="correctness") == (
        "Error executing tool get_misaligned: Evaluator 'correctness' has no alignment run yet. Judge the "
        "reference set with run_alignment(evaluator='correctness')."
    )


# ---- drafts and versions ------------------------------------------------------------------------------------


async def test_update_draft_returns_a_diff_and_does_not_save(client: Client) -> None:
    await seed(client)
    update = await ok(
        client,
        "update_draft",
        evaluator="correctness",
        find="Think step by step",
        replace_with="Reason carefully",
    )
    assert update["saved"] is False and update["draft_differs"] is True and update["base_version"] == 1
    assert "-Think step by step" in update["diff"] and "+Reason carefully" in update["diff"]
    settings = await ok(client, "update_draft", evaluator="correctness", judge={"temperature": 0.3})
    assert "temperature" in settings["diff"]
    versions = await ok(client, "list_versions", evaluator="correctness")
    assert versions["total"] == 1 and versions["draft_differs"] is True


async def test_update_draft_errors_store_nothing(client: Client, db_path: Path) -> None:
    await seed(client)
    before = snapshot(db_path)
    message = await fails(
        client, "update_draft", evaluator="correctness", find="no such text", replace_with="x"
    )
    assert "does not occur" in message and "'no such text'" in message
    assert "Nothing to change" in await fails(client, "update_draft", evaluator="correctness")
    assert "needs both" in await fails(client, "update_draft", evaluator="correctness", find="Rubric")
    assert "{{outputs}}" in await fails(client, "update_draft", evaluator="correctness", prompt="Be nice.")
    message = await fails(client, "update_draft", evaluator="correctness", judge={"temperature": 9})
    assert "temperature" in message
    assert snapshot(db_path) == before


async def test_save_prompt_creates_a_version_and_refuses_an_unchanged_draft(
    client: Client, db_path: Path
) -> None:
    await seed(client)
    before = snapshot(db_path)
    message = await fails(client, "save_prompt", evaluator="correctness")
    assert message == (
        "Error executing tool save_prompt: The draft of 'correctness' is identical to v1; nothing to save. "
        "Edit the draft with update_draft(evaluator='correctness')."
    )
    assert snapshot(db_path) == before
    await ok(
        client, "update_draft", evaluator="correctness", find="Think step by step", replace_with="Reason"
    )
    saved = await ok(client, "save_prompt", evaluator="correctness", message="shorter")
    assert (saved["version"], saved["message"]) == (2, "shorter")
    versions = await ok(client, "list_versions", evaluator="correctness", include_prompts=True)
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    assert "Reason about" in versions["versions"][1]["prompt"] and versions["draft_differs"] is False
    page = await ok(client, "list_versions", evaluator="correctness", limit=1)
    assert page["next_offset"] == 1 and page["versions"][0]["prompt"] is None


# ---- optimizer ----------------------------------------------------------------------------------------------

NUMBERS_RULE = "Every number in the output must match the reference output exactly; a wrong number fails it."


def reflecting_judge(body: dict[str, Any]) -> Reply:
    """The simulated judge, plus a reflection model that adds a rule about numbers to the instructions."""
    fmt = body.get("response_format")
    name = fmt.get("json_schema", {}).get("name") if isinstance(fmt, dict) else None
    if name == "prompt_revision":
        current = section(prompt_text(body), "instructions") or ""
        return Reply(
            content=json.dumps({"analysis": "Check numbers.", "instructions": f"{current}\n{NUMBERS_RULE}"})
        )
    return simulated_responder(body)


async def test_analyze_failures_groups_the_misaligned_cases(client: Client, judge: FakeJudgeServer) -> None:
    await seed(client)
    report = await ok(client, "run_alignment", evaluator="correctness")
    analysis = await ok(client, "analyze_failures", evaluator="correctness", use_llm=False)
    assert analysis["alignment_run"] == report["run"]["id"] and analysis["method"] == "keywords"
    grouped = {rid for mode in analysis["modes"] for rid in mode["run_ids"]}
    assert len(grouped) == analysis["misaligned"] > 0
    message = await fails(client, "analyze_failures", evaluator="correctness", alignment_run=999)
    assert "No alignment run 999" in message


async def test_a_proposal_reaches_the_draft_only_through_apply_proposal(
    client: Client, judge: FakeJudgeServer
) -> None:
    await seed(client)
    judge.responder = reflecting_judge
    message = await fails(client, "propose_prompt", evaluator="correctness", mode="reflect", budget=5)
    assert "budget" in message and "5" in message
    assert judge.calls == 0
    assert (await ok(client, "list_proposals", evaluator="correctness"))["proposals"] == []
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    result = await client.call_tool(
        "propose_prompt",
        {"evaluator": "correctness", "mode": "reflect", "budget": 150},
        progress_callback=on_progress,
    )
    assert not result.is_error, text(result)
    proposal = result.structured_content
    assert proposal is not None and proposal["changed"] and NUMBERS_RULE in proposal["diff"]
    assert "prompt" not in proposal and "base_prompt" not in proposal
    assert proposal["resource"] == f"align://proposals/{proposal['id']}"
    stored = json.loads(await read(client, proposal["resource"]))
    assert NUMBERS_RULE in stored["prompt"] and NUMBERS_RULE not in stored["base_prompt"]
    assert stored["status"] == "proposed" and progress == sorted(progress) and progress
    draft = (await ok(client, "get_evaluator", name="correctness"))["draft"]
    assert NUMBERS_RULE not in draft, "a proposal is never applied implicitly"
    listed = await ok(client, "list_proposals", evaluator="correctness")
    assert [p["id"] for p in listed["proposals"]] == [proposal["id"]]
    applied = await ok(client, "apply_proposal", evaluator="correctness", proposal_id=proposal["id"])
    assert applied["draft_differs"] and NUMBERS_RULE in applied["diff"] and applied["saved"] is False
    assert (await ok(client, "list_versions", evaluator="correctness"))["total"] == 1
    assert await fails(client, "apply_proposal", evaluator="correctness", proposal_id=99) == (
        "Error executing tool apply_proposal: No proposal 99. list_proposals lists the proposals. Let the "
        "optimizer propose a revised prompt with propose_prompt."
    )


# ---- resources and the prompt -------------------------------------------------------------------------------


async def read(client: Client, uri: str) -> str:
    result = await client.read_resource(uri)
    content = result.contents[0]
    assert hasattr(content, "text")
    return str(content.text)


async def test_resources_expose_evaluators_versions_queues_runs_and_reports(
    client: Client, judge: FakeJudgeServer
) -> None:
    await seed(client)
    static = {str(r.uri) for r in (await client.list_resources()).resources}
    assert static == {"align://evaluators", "align://queues", "ui://align-mcp/label", "ui://align-mcp/report"}
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert "align://reports/{alignment_run}" in templates and "align://evaluators/{name}" in templates
    report = await ok(client, "run_alignment", evaluator="correctness")

    assert '"name": "correctness"' in await read(client, "align://evaluators")
    assert '"labeled": 46' in await read(client, "align://queues")
    assert '"draft_differs": false' in await read(client, "align://evaluators/correctness")
    assert "{{outputs}}" in await read(client, "align://evaluators/correctness/draft")
    assert '"version": 1' in await read(client, "align://evaluators/correctness/versions")
    assert "Rubric:" in await read(client, "align://evaluators/correctness/versions/1")
    assert '"labeled": 46' in await read(client, "align://queues/correctness")
    assert "front basket" in await read(client, "align://runs/pp-003")
    markdown = await read(client, f"align://reports/{report['run']['id']}")
    assert markdown.startswith(f"# Alignment run {report['run']['id']}: correctness draft\n")
    assert "| agreement |" in markdown and "| Cohen's κ |" in markdown

    await ok(client, "update_draft", evaluator="correctness", find="Think step by step", replace_with="Think")
    edited = await ok(client, "run_alignment", evaluator="correctness")
    stored = await read(client, f"align://reports/{edited['run']['id']}")
    assert stored.startswith(f"# Alignment run {edited['run']['id']}: correctness draft vs v1\n")


async def test_unknown_resources_are_errors_that_say_what_exists(client: Client) -> None:
    await seed(client)
    with pytest.raises(MCPError, match=r"No evaluator named 'tone'\. Known: correctness"):
        await client.read_resource("align://evaluators/tone")
    with pytest.raises(MCPError, match="has no version 7"):
        await client.read_resource("align://evaluators/correctness/versions/7")
    with pytest.raises(MCPError, match="No alignment run 5"):
        await client.read_resource("align://reports/5")


async def test_align_evaluator_prompt_explains_the_loop_and_the_statistics(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert "align_evaluator" in prompts
    result = await client.get_prompt("align_evaluator", {"evaluator": "correctness"})
    block = result.messages[0].content
    assert isinstance(block, TextContent)
    body = block.text
    assert "evaluator **correctness**" in body
    for sentence in (
        "Labels must come from me: never\n   invent a score",
        'a judge that always says "pass" scores 90% agreement and is useless',
        "**Cohen's κ** is agreement beyond what chance would give",
        "16/20 = 80% agreement has an interval of roughly 58–92%",
        "McNemar's exact p-value says whether that difference is more than noise",
        "fewer than 20 labeled runs, or either class under about 20% of the labels",
        "Only when I agree, `save_prompt`",
    ):
        assert sentence in body, sentence
    generic = await client.get_prompt("align_evaluator", {})
    assert "(ask me which one, or create one)" in generic.messages[0].content.text  # type: ignore[union-attr]


async def test_an_import_root_confines_file_imports(
    client: Client, db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = tmp_path / "imports"
    allowed.mkdir()
    (allowed / "runs.jsonl").write_text(EXAMPLE_RUNS.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("ALIGN_MCP_IMPORT_ROOT", str(allowed))
    before = snapshot(db_path)

    outside = str(allowed / ".." / "elsewhere.jsonl")
    message = await fails(client, "import_runs", source="support", path=outside)

    assert message == (
        f"Error executing tool import_runs: Import path {outside!r} is outside ALIGN_MCP_IMPORT_ROOT "
        f"({allowed.resolve()}). Put the file under that directory, or pass the runs inline."
    )
    assert snapshot(db_path) == before
    report = await ok(client, "import_runs", source="support", path=str(allowed / "runs.jsonl"))
    assert report["inserted"] == 46
