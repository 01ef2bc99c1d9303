"""The align-mcp CLI, driven through click's CliRunner against a temporary store (and the fake judge for align)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from align_mcp.cli import main
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer
from conftest import EXAMPLE_RUNS, snapshot

Cli = Callable[..., Result]


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under `group`, loading lazily registered subcommands."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


@pytest.fixture
def cli(db_path: Path) -> Cli:
    """Run `align-mcp --db <tmp store> ARGS...`; unexpected exceptions propagate."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--db", str(db_path), *args], catch_exceptions=False)

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


def as_json(result: Result) -> Any:
    return json.loads(ok(result))


def fails_with(result: Result, message: str) -> None:
    """A domain error: one `Error: ...` line on stderr, nothing on stdout, exit status 1."""
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {message}\n")


@pytest.fixture
def support(cli: Cli) -> Cli:
    """The example runs imported into 'support' and a binary evaluator 'correctness' labeled from their feedback."""
    ok(cli("import", str(EXAMPLE_RUNS), "--source", "support"))
    ok(cli("evaluator", "create", "correctness"))
    return cli


@pytest.mark.parametrize("path", [(), *command_paths(main)], ids=lambda p: " ".join(p) or "align-mcp")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], catch_exceptions=False)

    out = ok(result)
    usage = out.splitlines()[0].split()
    assert usage[0] == "Usage:"
    assert usage[2 : 2 + len(path)] == list(path)
    assert "--help" in out


def test_import_reports_new_and_already_stored_runs(cli: Cli) -> None:
    first = ok(cli("import", str(EXAMPLE_RUNS), "--source", "support"))
    again = ok(cli("import", str(EXAMPLE_RUNS), "--source", "support"))

    assert first == (
        "Imported 46 new run(s) into 'support' (experiment); 0 already stored.\n"
        "  feedback 'correctness': 46 label(s) -> no evaluator yet (kept for one created later)\n"
    )
    assert again.splitlines()[0] == "Imported 0 new run(s) into 'support' (experiment); 46 already stored."


def test_import_of_a_bad_file_is_one_error_line(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n[1, 2]\n', encoding="utf-8")

    fails_with(
        cli("import", str(path), "--source", "bad"),
        f"{path}:2: not a JSON object (got an array). Fix that line and import again; nothing from this file "
        "was stored.",
    )
    assert as_json(cli("sources", "--json")) == []


def test_import_json_output_is_the_report(cli: Cli) -> None:
    report = as_json(cli("import", str(EXAMPLE_RUNS), "--source", "web", "--kind", "project", "--json"))

    assert (report["source"], report["kind"], report["inserted"], report["skipped"]) == (
        "web",
        "project",
        46,
        0,
    )
    assert report["unmatched_feedback_keys"] == ["correctness"]


def test_evaluators_are_created_listed_and_shown(support: Cli) -> None:
    created = ok(support("evaluator", "create", "quality", "--score-type", "ordinal", "--range", "1-5"))
    listed = ok(support("evaluator", "list"))
    shown = ok(support("evaluator", "show", "correctness"))

    assert created == "Created evaluator 'quality' (ordinal (1..5)); prompt saved as v1.\n"
    assert [line.split()[0] for line in listed.splitlines()[2:]] == ["correctness", "quality"]
    assert shown.startswith(
        "correctness: feedback key 'correctness', binary (0 = fail, 1 = pass)\n"
        "judge: model=$ALIGN_MCP_JUDGE_MODEL temperature=0.0\n"
    )
    assert "initial prompt" in shown
    assert "draft (same as the last saved version):" in shown
    assert "{{outputs}}" in shown


def test_evaluator_json_output_parses(support: Cli) -> None:
    ok(support("evaluator", "create", "tone", "--score-type", "categorical", "--labels", "good, ok,bad"))

    listed = as_json(support("evaluator", "list", "--json"))
    shown = as_json(support("evaluator", "show", "tone", "--json"))

    assert [ev["name"] for ev in listed] == ["correctness", "tone"]
    assert shown["score_type"] == {
        "kind": "categorical",
        "labels": ["good", "ok", "bad"],
        "min": None,
        "max": None,
    }
    assert [v["message"] for v in shown["versions"]] == ["initial prompt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--score-type", "categorical", "--labels", "good"),
            "A categorical score type needs at least two labels, e.g. labels=good,ok,bad.",
        ),
        (("--score-type", "ordinal", "--range", "one-five"), "--range 'one-five' is not like 1-5."),
        (
            ("--score-type", "ordinal"),
            "An ordinal score type needs min < max (got min=None, max=None), e.g. 1..5.",
        ),
    ],
)
def test_an_impossible_score_type_is_one_error_line(cli: Cli, args: tuple[str, ...], message: str) -> None:
    fails_with(cli("evaluator", "create", "tone", *args), message)


def test_an_unknown_evaluator_is_one_error_line(support: Cli) -> None:
    fails_with(
        support("evaluator", "show", "tone"),
        "No evaluator named 'tone'. Known: correctness. Create one with `align-mcp evaluator create NAME`.",
    )


def test_runs_are_queued_handed_out_and_labeled(support: Cli, db_path: Path) -> None:
    ok(support("evaluator", "create", "helpful"))

    added = ok(support("queue", "add", "helpful", "--source", "support", "--where", "channel=email"))
    items = as_json(support("queue", "next", "helpful", "--limit", "2", "--labeler", "ann", "--json"))
    first, second = (item["run_id"] for item in items)
    labeled = ok(support("label", "helpful", first, "pass", "--comment", "clear and right"))
    relabeled = ok(support("label", "helpful", first, "0"))
    queues = {q["evaluator"]: q for q in as_json(support("queue", "list", "--json"))}

    assert added == "Queued 10 run(s) for 'helpful' (0 already queued); 10 pending.\n"
    assert items[0]["metadata"]["channel"] == "email"
    assert labeled == f"Labeled {first} = 1; 1 labeled, 9 pending.\n"
    assert relabeled == f"Relabeled {first} = 0; 1 labeled, 9 pending.\n"
    assert (queues["helpful"]["pending"], queues["helpful"]["reserved"], queues["helpful"]["labeled"]) == (
        9,
        1,
        1,
    )
    assert (queues["correctness"]["labeled"], queues["correctness"]["balance"]["counts"]) == (
        46,
        {"0": 18, "1": 28},
    )
    with Store(db_path) as store:
        assert [(h.score, h.labeler) for h in store.label_history("helpful", first)] == [
            (1, "cli"),
            (0, "cli"),
        ]
        assert store.reservations("helpful", [second])[second].reserved_by == "ann"


def test_a_labels_file_is_stored_all_or_nothing(support: Cli, tmp_path: Path, db_path: Path) -> None:
    ok(support("evaluator", "create", "helpful"))
    good = tmp_path / "labels.jsonl"
    good.write_text(
        '{"run_id": "pp-001", "score": 0, "comment": "wrong fee"}\n\n{"run_id": "pp-002", "score": "pass"}\n',
        encoding="utf-8",
    )
    bad_json = tmp_path / "bad-json.jsonl"
    bad_json.write_text('{"run_id": "pp-003", "score": 1}\n{"run_id": \n', encoding="utf-8")
    bad_score = tmp_path / "bad-score.jsonl"
    bad_score.write_text(
        '{"run_id": "pp-003", "score": 1}\n{"run_id": "pp-004", "score": 3}\n', encoding="utf-8"
    )

    stored = ok(support("labels", "helpful", str(good), "--labeler", "ann"))
    fails_with(
        support("labels", "helpful", str(bad_json)),
        f"{bad_json}:2: invalid JSON (Expecting value); no label was stored.",
    )
    fails_with(
        support("labels", "helpful", str(bad_score)),
        "Label 2 (run 'pp-004'): Score 3 is not valid for a binary evaluator; use 1 (pass) or 0 (fail).",
    )

    assert stored == "Stored 2 label(s) for 'helpful'.\n"
    with Store(db_path) as store:
        assert [(r.run_id, r.score, r.comment, r.labeler) for r in store.current_labels("helpful")] == [
            ("pp-001", 0, "wrong fee", "ann"),
            ("pp-002", 1, None, "ann"),
        ]


def test_the_draft_is_edited_diffed_saved_and_restored(support: Cli, tmp_path: Path) -> None:
    edited = ok(
        support(
            "draft", "edit", "correctness", "--replace", "Score 1 (pass) when", "Score 1 (pass) only when"
        )
    )
    ok(support("draft", "edit", "correctness", "--set", "temperature=0.3"))
    diff = ok(support("draft", "diff", "correctness"))
    saved = ok(support("save", "correctness", "-m", "stricter pass rule"))
    fails_with(
        support("save", "correctness"),
        "The draft of 'correctness' is identical to v2; nothing to save. Edit the draft with "
        "`align-mcp draft edit correctness --file PROMPT_FILE` (or --replace OLD NEW).",
    )
    versions = as_json(support("versions", "correctness", "--json"))
    restored = ok(support("restore", "correctness", "1"))
    draft = as_json(support("draft", "show", "correctness", "--json"))
    new_prompt = tmp_path / "prompt.md"
    new_prompt.write_text("Pass only perfect answers.\n{{outputs}}\n", encoding="utf-8")
    from_file = as_json(support("draft", "edit", "correctness", "--file", str(new_prompt), "--json"))

    assert edited.startswith("--- v1\n+++ draft\n")
    assert "\n+- Score 1 (pass) only when the output is correct" in edited
    assert diff.endswith('judge settings: {"temperature": "0.0 -> 0.3"}\n\n')
    assert saved == "Saved 'correctness' v2: stricter pass rule\n"
    assert [(v["version"], v["message"]) for v in versions] == [
        (1, "initial prompt"),
        (2, "stricter pass rule"),
    ]
    assert restored == "The draft of 'correctness' is now v1's prompt (not saved as a new version).\n"
    assert "Score 1 (pass) when" in draft["draft"]
    assert draft["judge"]["temperature"] == 0.0
    assert (from_file["base_version"], from_file["draft_differs"]) == (2, True)
    assert from_file["notes"] == [
        "The draft is not saved. Judge the reference set with `align-mcp align correctness`. Save it as a new "
        "version with `align-mcp save correctness`."
    ]
    assert "+Pass only perfect answers.\n" in from_file["diff"]
    assert ok(support("draft", "show", "correctness")) == "Pass only perfect answers.\n{{outputs}}\n\n"


def test_a_draft_edit_without_a_change_is_refused(support: Cli) -> None:
    fails_with(
        support("draft", "edit", "correctness"),
        "Nothing to change: give --file, --replace OLD NEW, --set KEY=VALUE, --member, --combine or "
        "--few-shot SETTINGS.",
    )
    fails_with(
        support("draft", "edit", "correctness", "--replace", "no such passage", "x"),
        "The text to replace does not occur in the draft of 'correctness': 'no such passage'. Quote a passage "
        "that occurs exactly once, or replace the whole prompt. `align-mcp draft show correctness` prints the "
        "draft.",
    )


def test_sources_and_a_run_are_shown(support: Cli, support_runs: list[dict[str, Any]]) -> None:
    sources = ok(support("sources"))
    run = as_json(support("show-run", "pp-001"))

    assert sources.splitlines() == [
        "source   kind        runs",
        "-------  ----------  ----",
        "support  experiment  46",
    ]
    first = support_runs[0]
    assert run == {k: first[k] for k in ("id", "inputs", "outputs", "reference_outputs", "metadata")} | {
        "source": "support"
    }
    fails_with(
        support("show-run", "pp-999"),
        "No run with id 'pp-999'. Check the id. Import runs with `align-mcp import PATH --source SOURCE`.",
    )


@pytest.mark.parametrize(
    "args",
    [
        ("sources",),
        ("evaluator", "list"),
        ("evaluator", "show", "correctness"),
        ("queue", "list"),
        ("queue", "next", "correctness"),
        ("queue", "add", "correctness", "--ids", "pp-001,pp-002"),
        ("draft", "show", "correctness"),
        ("draft", "diff", "correctness"),
        ("versions", "correctness"),
        ("restore", "correctness", "1"),
        ("label", "correctness", "pp-001", "1"),
        ("runs", "correctness"),
    ],
    ids=" ".join,
)
def test_json_output_parses(support: Cli, args: tuple[str, ...]) -> None:
    assert isinstance(as_json(support(*args, "--json")), dict | list)


def test_a_store_that_is_not_a_database_is_one_error_line(cli: Cli, db_path: Path) -> None:
    db_path.write_text("not a database\n" * 200, encoding="utf-8")

    fails_with(
        cli("sources"),
        f"{db_path} is not an align-mcp store (file is not a database). Point ALIGN_MCP_DB at another file.",
    )


def test_align_with_the_simulated_judge_reports_agreement(support: Cli, judge: FakeJudgeServer) -> None:
    ok(
        support(
            "draft", "edit", "correctness", "--replace", "Think step by step", "Think carefully, step by step"
        )
    )

    out = ok(support("align", "correctness"))
    calls = judge.calls
    runs = as_json(support("runs", "correctness", "--json"))
    misaligned = ok(support("misaligned", "correctness", "--limit", "1"))
    report = as_json(support("report", str(runs[0]["id"]), "--json"))
    resumed = ok(support("resume", str(runs[0]["id"])))

    assert re.search(
        r"^Alignment.*: run 1, correctness draft, model simulated-judge \[simulated judge\]", out, re.M
    )
    assert re.search(r"^Compared with the last saved version: run 2, correctness v1", out, re.M)
    agreement = re.search(r"^  agreement (\d+\.\d)% .*\[simulated judge\]$", out, re.M)
    assert agreement is not None
    assert calls > 0
    assert [(r["prompt_ref"], r["status"], r["model"]) for r in runs] == [
        ("draft", "completed", "simulated-judge"),
        ("v1", "completed", "simulated-judge"),
    ]
    assert f"{100 * report['run']['metrics']['agreement']['value']:.1f}" == agreement.group(1)
    assert re.match(r"\d+ misaligned in run 1 \(draft\) \[simulated judge\]\n", misaligned)
    assert "\nhuman:     " in misaligned
    assert re.search(r"^judge:     \d — \[simulated judge\] ", misaligned, re.M)
    assert "agreement" in resumed
    assert judge.calls == calls  # resuming a finished run judges nothing again


def test_align_without_a_judge_model_is_refused_and_leaves_no_run(support: Cli, db_path: Path) -> None:
    fails_with(
        support("align", "correctness"),
        "No judge model is configured. Set ALIGN_MCP_JUDGE_MODEL (e.g. gpt-4.1-mini, or the model name your "
        "Ollama/vLLM server serves) or give the evaluator a model.",
    )

    with Store(db_path) as store:
        assert store.alignment_run_ids("correctness") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("align", "correctness", "--concurrency", "0"),
            "Invalid value for '--concurrency': 0: the number of parallel judge calls must be a positive number "
            "(at least 1).",
        ),
        (
            ("resume", "1", "--concurrency", "-1"),
            "Invalid value for '--concurrency': -1: the number of parallel judge calls must be a positive number "
            "(at least 1).",
        ),
        (
            ("queue", "add", "correctness", "--source", "support", "--sample", "-5"),
            "Invalid value for '--sample': -5: the sample size must be a positive number (at least 1).",
        ),
    ],
)
def test_a_count_flag_below_one_is_refused_before_anything_runs(
    support: Cli, db_path: Path, args: tuple[str, ...], message: str
) -> None:
    before = snapshot(db_path)

    result = support(*args)

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"Error: {message}"
    assert snapshot(db_path) == before


def test_import_says_how_many_repeated_records_were_stored_once(cli: Cli, tmp_path: Path) -> None:
    record = {"id": "a", "inputs": {"q": "1"}, "outputs": {"a": "2"}}
    path = tmp_path / "runs.jsonl"
    path.write_text((json.dumps(record) + "\n") * 3, encoding="utf-8")

    out = ok(cli("import", str(path), "--source", "s"))

    assert out == (
        "Imported 1 new run(s) into 's' (experiment); 0 already stored.\n"
        "  2 record(s) repeated an earlier record of this file (same id and content) and were stored once.\n"
    )


def test_evaluator_create_prints_the_note_on_a_path_no_run_has(support: Cli, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Q: {{inputs.question}}\nA: {{outputs.answr}}\n", encoding="utf-8")

    out = ok(support("evaluator", "create", "strict", "--prompt-file", str(prompt)))

    lines = out.splitlines()
    assert lines[0] == "Created evaluator 'strict' (binary (0 = fail, 1 = pass)); prompt saved as v1."
    assert lines[1].startswith(
        "note: None of the 46 stored run(s) has {{outputs.answr}}, so the judge would see '(missing)' there. "
        "Their paths: outputs.answer."
    )
