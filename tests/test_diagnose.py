"""Beyond agreement (diagnose/ and engine/reviews.py): disagreement triage, blind second reviews with κ,
judge self-consistency, suggested next labels and the corrected pass rate — against the fake judge server,
statistics by hand."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from align_mcp.core import metrics
from align_mcp.core.models import Note, Score, ScoreType
from align_mcp.diagnose import consistency, pass_rate, suggestions, triage
from align_mcp.engine import alignment as align
from align_mcp.engine import evaluators, holdout, queues, reviews, samples
from align_mcp.engine.ingest import import_runs
from align_mcp.errors import Conflict, EmptyReferenceSet, InvalidInput, NextStep, NotFound
from align_mcp.store import Store
from align_mcp.testing.fakejudge import FakeJudgeServer, Reply, garbage, prompt_text, section

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
RUNS = [
    json.loads(line) for line in (ROOT / "examples" / "support_runs.jsonl").read_text().splitlines() if line
]
HUMAN: dict[str, Score] = {r["id"]: r["feedback"]["correctness"]["score"] for r in RUNS}
NAME = "correctness"
MARKER = "Check every number against the reference output."
# Ten unlabeled runs of a second source, for suggestions and the corrected pass rate.
NEW = [
    {"id": f"u{i}", "inputs": {"question": f"New question {i}?"}, "outputs": {"answer": f"New answer {i}."}}
    for i in range(1, 11)
]
# The seeded holdout of the 46 sample labels keeps these 13 runs in test: 8 pass, 5 fail.
TEST_PASS = ["pp-005", "pp-018", "pp-024", "pp-027", "pp-032", "pp-033", "pp-041", "pp-046"]
TEST_FAIL = ["pp-006", "pp-010", "pp-012", "pp-031", "pp-043"]


def _key(outputs: dict[str, Any]) -> str:
    return json.dumps(outputs, indent=2, ensure_ascii=False)


RUN_OF_OUTPUT = {_key(r["outputs"]): r["id"] for r in [*RUNS, *NEW]}


def run_of(body: dict[str, Any]) -> str:
    """The run a judge request is about, found from its rendered <outputs> section."""
    return RUN_OF_OUTPUT[section(prompt_text(body), "outputs") or ""]


@dataclass
class Script:
    """What the fake judge answers: `score(run_id, prompt)` to judge calls, `triage(body)` to triage calls."""

    score: Callable[[str, str], Score] = lambda rid, _text: HUMAN.get(rid, 1)
    triage: Callable[[dict[str, Any]], Reply] | None = None
    seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def __call__(self, body: dict[str, Any]) -> Reply:
        if body["response_format"]["json_schema"]["name"] == "triage":
            assert self.triage is not None
            return self.triage(body)
        rid = run_of(body)
        self.seen[rid] += 1
        return Reply(score=self.score(rid, prompt_text(body)), reasoning=f"Reasoning about {rid}.")


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def srv(script: Script, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJudgeServer]:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "ALIGN_MCP_")):
            monkeypatch.delenv(name)
    with FakeJudgeServer(responder=script) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", "fake-judge")
        yield server


@pytest.fixture
def store(tmp_path: Path, srv: FakeJudgeServer) -> Iterator[Store]:
    """The 46 labeled sample runs and a binary `correctness` evaluator that picks up their labels."""
    with Store(tmp_path / "a.db") as s:
        import_runs(s, "support", path=ROOT / "examples" / "support_runs.jsonl")
        evaluators.create(s, NAME, ScoreType(kind="binary"))
        yield s


def flipped(*ids: str) -> Callable[[str, str], Score]:
    """A judge that agrees with the human labels except on `ids` (and passes unlabeled runs)."""
    return lambda rid, _text: 1 - int(HUMAN[rid]) if rid in ids else HUMAN.get(rid, 1)


def triage_answer(
    categories: dict[str, str], drop: tuple[str, ...] = (), extra: tuple[str, ...] = ()
) -> Reply:
    cases = [
        {"run_id": rid, "category": cat, "reason": f"Because of {rid}."} for rid, cat in categories.items()
    ]
    cases = [c for c in cases if c["run_id"] not in drop]
    cases += [{"run_id": rid, "category": "judge_error", "reason": "?"} for rid in extra]
    return Reply(content=json.dumps({"cases": cases}))


def sent_ids(body: dict[str, Any]) -> list[str]:
    return list(
        body["response_format"]["json_schema"]["schema"]["properties"]["cases"]["items"]["properties"][
            "run_id"
        ]["enum"]
    )


def history(store: Store, rid: str) -> list[tuple[Score, str | None]]:
    return [(h.score, h.labeler) for h in queues.label_history(store, NAME, rid)]


# ---- disagreement triage -----------------------------------------------------------------------------------

DEV_FLIPS = ("pp-001", "pp-002", "pp-003")
CATEGORY_OF = {"pp-001": "label_error", "pp-002": "rubric_gap", "pp-003": "judge_error"}


async def test_triage_classifies_misaligned_dev_cases_in_one_structured_call_per_chunk(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    script.score = flipped(*DEV_FLIPS, "pp-005")  # pp-005 is in test: never shown to triage
    aid = (await align.run_alignment(store, NAME)).run.id
    script.triage = lambda body: triage_answer({rid: CATEGORY_OF[rid] for rid in sent_ids(body)})
    before = srv.calls

    report = await triage.triage(store, NAME, chunk_size=2)

    assert srv.calls - before == report.judge_calls == 2
    assert [(c.run_id, c.category, c.reason) for c in report.cases] == [
        (rid, CATEGORY_OF[rid], f"Because of {rid}.") for rid in DEV_FLIPS
    ]
    assert report.counts == {"judge_error": 1, "label_error": 1, "rubric_gap": 1, "unclassified": 0}
    assert report.notes[0] == Note(
        text="1 possible label error(s): 'pp-001'.",
        next_steps=[NextStep("request_review", {"evaluator": NAME, "run_ids": ["pp-001"]})],
    )
    assert report.notes[1] == Note(
        text="1 case(s) the rubric does not decide: add an instruction that settles them to the draft, then "
        "judge the reference set again.",
        next_steps=[
            NextStep("update_draft", {"evaluator": NAME}),
            NextStep("run_alignment", {"evaluator": NAME}),
        ],
    )
    assert aid == report.alignment_run
    bodies = srv.chat_bodies[before:]
    assert sorted(rid for b in bodies for rid in sent_ids(b)) == list(DEV_FLIPS)
    prompt = prompt_text(next(b for b in bodies if "pp-001" in sent_ids(b)))  # chunks run concurrently
    for sentence in (
        "`label_error`: the rubric decides the case and the human score looks wrong",
        "`rubric_gap`: the rubric does not decide the case",
        "Classify every case exactly once, using the run_id given with it, and no other run_id.",
        "Score 1 (pass) when the output is correct",  # the judge's rubric
        HUMAN_COMMENT_001,
    ):
        assert sentence in prompt
    assert not any("pp-005" in prompt_text(b) for b in bodies)


HUMAN_COMMENT_001 = RUNS[0]["feedback"]["correctness"]["comment"]


async def test_triage_re_asks_once_when_the_reply_names_other_run_ids(store: Store, script: Script) -> None:
    script.score = flipped(*DEV_FLIPS)
    await align.run_alignment(store, NAME)
    replies = [
        triage_answer(CATEGORY_OF, drop=("pp-003",), extra=("pp-999",)),
        triage_answer(CATEGORY_OF),
    ]
    asked: list[dict[str, Any]] = []
    script.triage = lambda body: (asked.append(body), replies.pop(0))[1]

    report = await triage.triage(store, NAME)

    assert (report.judge_calls, report.reasks) == (2, 1)
    assert [c.category for c in report.cases] == ["label_error", "rubric_gap", "judge_error"]
    assert (
        "That reply was invalid (run_id 'pp-999' was not among the cases sent; "
        "no classification for 'pp-003')" in asked[1]["messages"][-1]["content"]
    )


async def test_cases_never_classified_are_reported_not_guessed(store: Store, script: Script) -> None:
    script.score = flipped(*DEV_FLIPS)
    aid = (await align.run_alignment(store, NAME)).run.id
    script.triage = lambda body: triage_answer(CATEGORY_OF, drop=("pp-002",))

    report = await triage.triage(store, NAME)

    case = {c.run_id: c for c in report.cases}["pp-002"]
    assert (case.category, case.error) == (None, "not classified: no classification for 'pp-002'")
    assert report.counts["unclassified"] == 1
    assert report.notes[-1] == Note(
        text="1 case(s) could not be classified: 'pp-002'.",
        next_steps=[NextStep("triage", {"evaluator": NAME, "alignment_run": aid, "run_ids": ["pp-002"]})],
    )


async def test_triage_refuses_run_ids_that_are_not_misaligned_dev_cases(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    script.score = flipped(*DEV_FLIPS, "pp-005")
    report = await align.run_alignment(store, NAME)
    before = srv.calls
    with pytest.raises(InvalidInput) as e:
        await triage.triage(store, NAME, run_ids=["pp-001", "pp-005", "nope"])
    assert str(e.value) == (
        f"Not misaligned dev case(s) of alignment run {report.run.id}: 'pp-005', 'nope'. Only misaligned dev "
        "cases can be classified."
    )
    assert e.value.next_steps == (
        NextStep("show_misaligned", {"evaluator": NAME, "alignment_run": report.run.id}),
    )
    with pytest.raises(InvalidInput, match=r"^chunk_size=0 must be between 1 and 25 cases per call\.$"):
        await triage.triage(store, NAME, chunk_size=0)
    assert srv.calls == before


# ---- blind second reviews ----------------------------------------------------------------------------------


def reference(store: Store) -> dict[str, Score]:
    return dict(queues.reference_set(store, NAME))


def test_a_second_label_that_agrees_stands_and_the_first_labeler_cannot_give_it(store: Store) -> None:
    report = reviews.request_review(store, NAME, ["pp-001"], reason="comment contradicts the score?")
    assert (report.requested, report.pending_reviews) == (["pp-001"], 1)
    assert store.pending_ids(NAME) == ["pp-001"]
    item = queues.next_items(store, NAME, labeler="bea")[0]
    assert item.run_id == "pp-001"
    assert not {"score", "comment", "labeler", "human_score"} & set(item.model_dump())

    with pytest.raises(Conflict) as e:
        queues.submit_label(store, NAME, "pp-001", 1, labeler="import")
    assert str(e.value) == (
        "Run 'pp-001' is waiting for a blind second review for 'correctness', and 'import' gave the first "
        "label; the second must come from a different labeler, or a final label can overrule the first."
    )
    assert e.value.next_steps == (NextStep("adjudicate_label", {"evaluator": NAME, "run_id": "pp-001"}),)
    with pytest.raises(InvalidInput) as e2:
        queues.submit_label(store, NAME, "pp-001", 1)
    assert str(e2.value) == (
        "Run 'pp-001' is waiting for a blind second review for 'correctness': say who is labeling "
        "(labeler=...), so this label can be told apart from the earlier one."
    )
    assert history(store, "pp-001") == [(0, "import")]

    queues.submit_label(store, NAME, "pp-001", 0, comment="Agree: 15 minutes.", labeler="bea")

    review = reviews.list_reviews(store, NAME).reviews[0]
    assert (review.status, review.second_score, review.second_labeler) == ("agreed", 0, "bea")
    assert (review.in_reference_set, review.reference_score, review.reason) == (
        True,
        0,
        "comment contradicts the score?",
    )
    assert reference(store)["pp-001"] == 0
    assert history(store, "pp-001") == [(0, "import"), (0, "bea")]
    assert store.pending_ids(NAME) == []


def test_disagreeing_reviews_leave_the_reference_set_until_a_third_labeler_settles_them(store: Store) -> None:
    reviews.request_review(store, NAME, ["pp-001"])
    assert reference(store)["pp-001"] == 0  # pending: the first label still counts

    queues.submit_label(store, NAME, "pp-001", 1, labeler="bea")

    assert "pp-001" not in reference(store)
    assert store.pending_ids(NAME) == ["pp-001"]
    assert reviews.list_reviews(store, NAME, status="disputed").reviews[0].in_reference_set is False
    for who in ("import", "Bea"):
        with pytest.raises(Conflict, match=r"from someone other than its two reviewers \('import', 'bea'\)"):
            queues.submit_label(store, NAME, "pp-001", 1, labeler=who)

    queues.submit_label(store, NAME, "pp-001", 1, labeler="cem")

    review = reviews.list_reviews(store, NAME).reviews[0]
    assert (review.status, review.final_score, review.final_labeler) == ("adjudicated", 1, "cem")
    assert reference(store)["pp-001"] == 1
    assert history(store, "pp-001") == [(0, "import"), (1, "bea"), (1, "cem")]
    assert store.pending_ids(NAME) == []


def test_next_items_never_hands_a_review_to_a_labeler_who_already_labeled_it(store: Store) -> None:
    reviews.request_review(store, NAME, ["pp-001"])

    assert [i.run_id for i in queues.next_items(store, NAME, labeler="Import", limit=5)] == []
    assert [i.run_id for i in queues.next_items(store, NAME, labeler="bea", limit=5)] == ["pp-001"]

    queues.submit_label(store, NAME, "pp-001", 1, labeler="bea")  # disagrees: disputed, back in the queue
    for reviewer in ("import", "bea"):
        assert queues.next_items(store, NAME, labeler=reviewer, limit=5) == []
    assert [i.run_id for i in queues.next_items(store, NAME, labeler="cem", limit=5)] == ["pp-001"]


def test_adjudicate_settles_an_open_review_and_refuses_when_there_is_none(store: Store) -> None:
    reviews.request_review(store, NAME, ["pp-002"])
    with pytest.raises(InvalidInput, match=r"^Say who adjudicates \(labeler=\.\.\.\)"):
        reviews.adjudicate(store, NAME, "pp-002", 1, labeler=" ")

    item = reviews.adjudicate(store, NAME, "pp-002", "pass", labeler="lead", comment="Holiday hours given.")

    assert (item.status, item.final_score, item.second_score, item.reference_score) == (
        "adjudicated",
        1,
        None,
        1,
    )
    assert store.pending_ids(NAME) == []
    with pytest.raises(InvalidInput) as e:
        reviews.adjudicate(store, NAME, "pp-002", 0, labeler="lead")
    assert str(e.value) == (
        "Run 'pp-002' has no open review for 'correctness', so there is nothing to adjudicate. A new label "
        "replaces its current one; the history is kept."
    )
    assert e.value.next_steps == (NextStep("label", {"evaluator": NAME, "run_id": "pp-002"}),)


def test_bad_review_requests_change_nothing(store: Store) -> None:
    import_runs(store, "new", runs=NEW[:1])
    reviews.request_review(store, NAME, ["pp-003"])
    cases: list[tuple[list[str], type[Exception], str]] = [
        (["pp-001", "nope"], NotFound, "1 run id(s) are not in the store: 'nope'."),
        (["pp-001", "u1"], InvalidInput, "Run(s) without a label for 'correctness': 'u1'."),
        (["pp-001", "pp-003"], Conflict, "Run(s) already under review for 'correctness': 'pp-003'."),
        ([], InvalidInput, "run_ids is empty; pass at least one run id."),
    ]
    for ids, error, start in cases:
        with pytest.raises(error) as e:
            reviews.request_review(store, NAME, ids)
        assert str(e.value).startswith(start)
    assert [r.run_id for r in reviews.list_reviews(store, NAME).reviews] == ["pp-003"]
    assert store.pending_ids(NAME) == ["pp-003"]


def test_inter_annotator_kappa_over_blind_second_labels_matches_the_hand_computation(store: Store) -> None:
    with pytest.raises(InvalidInput) as e:
        reviews.annotator_agreement(store, NAME)
    assert str(e.value) == (
        "No run of 'correctness' has a blind second label yet, so there is no inter-annotator agreement to "
        "report; labeled runs need a blind second review first."
    )
    assert e.value.next_steps == (NextStep("request_review", {"evaluator": NAME}),)
    first = {"pp-003": 1, "pp-004": 1, "pp-007": 1, "pp-001": 0, "pp-002": 0}
    assert {rid: HUMAN[rid] for rid in first} == first
    second = {"pp-003": 1, "pp-004": 1, "pp-007": 0, "pp-001": 0, "pp-002": 0}
    reviews.request_review(store, NAME, list(first))
    queues.submit_labels(store, NAME, [{"run_id": r, "score": s} for r, s in second.items()], labeler="bea")

    agreement = reviews.annotator_agreement(store, NAME)

    # p_o = 4/5; first rater passes 3/5, second 2/5: p_e = 3/5·2/5 + 2/5·3/5 = 12/25;
    # κ = (4/5 − 12/25) / (1 − 12/25) = 8/13.
    assert (agreement.n, agreement.agreement.value, agreement.disagreements) == (5, 0.8, ["pp-007"])
    assert agreement.kappa == pytest.approx(8 / 13)
    assert reviews.list_reviews(store, NAME).agreement == agreement


# ---- judge self-consistency --------------------------------------------------------------------------------


def alternating(rid_flips: dict[str, list[Score]], seen: dict[str, int]) -> Callable[[str, str], Score]:
    """Each call on a run in `rid_flips` answers the next score of its list, cycling; other runs answer 1."""

    def score(rid: str, _text: str) -> Score:
        if rid not in rid_flips:
            return 1
        seq = rid_flips[rid]
        return seq[(seen[rid] - 1) % len(seq)]

    return score


async def test_self_consistency_reports_flips_per_run_and_never_uses_the_cache(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    script.score = alternating({"pp-001": [1, 0, 1], "pp-002": [0, 0, 1]}, script.seen)
    ids = ["pp-001", "pp-002", "pp-003"]

    report = await consistency.self_consistency(store, NAME, k=3, run_ids=ids, temperature=0.7)

    assert srv.calls == report.judge_calls == 9
    assert {b["temperature"] for b in srv.chat_bodies} == {0.7}
    shares = {e.run_id: e.flip_share for e in report.examples}
    assert shares == pytest.approx({"pp-001": 1 / 3, "pp-002": 1 / 3, "pp-003": 0.0})
    assert {e.run_id: e.modal_score for e in report.examples} == {"pp-001": 1, "pp-002": 0, "pp-003": 1}
    assert (report.flip_rate.k, report.flip_rate.n) == (2, 3)
    assert report.mean_flip_share == pytest.approx(2 / 9)
    assert samples.unstable_run_ids(store, NAME) == pytest.approx({"pp-001": 1 / 3, "pp-002": 1 / 3})
    assert samples.unstable_run_ids(store, NAME, prompt="another prompt") == {}

    await consistency.self_consistency(store, NAME, k=3, run_ids=ids, temperature=0.7)
    assert srv.calls == 18  # the same requests again: the result cache is bypassed


async def test_unanimous_samples_at_temperature_zero_are_called_out(store: Store) -> None:
    report = await consistency.self_consistency(store, NAME, k=2, sample=4)

    assert (report.n, report.temperature, report.flip_rate.value) == (4, 0.0, 0.0)
    dev = holdout.split_ids(store, NAME, "dev")
    assert {e.run_id for e in report.examples} <= dev
    assert report.notes == [
        "All 2 samples agreed on every run at temperature 0. Many servers are deterministic at temperature "
        "0, so this says little about how sure the judge is; rerun with temperature=0.7 (or the temperature "
        "you will use) to probe it."
    ]


async def test_self_consistency_refuses_k_below_two_and_unknown_ids_without_judging(
    store: Store, srv: FakeJudgeServer
) -> None:
    with pytest.raises(InvalidInput) as e:
        await consistency.self_consistency(store, NAME, k=1)
    assert str(e.value) == (
        "k=1: self-consistency compares repeated verdicts, so it needs at least 2 samples per run "
        "(at most 20)."
    )
    with pytest.raises(NotFound, match=r"^1 run id\(s\) are not in the store: 'nope'\."):
        await consistency.self_consistency(store, NAME, run_ids=["pp-001", "nope"])
    with Store(store.path.parent / "empty.db") as empty:
        evaluators.create(empty, NAME, ScoreType(kind="binary"))
        with pytest.raises(EmptyReferenceSet, match=r"has no labeled runs to sample from"):
            await consistency.self_consistency(empty, NAME)
    assert srv.calls == 0
    assert samples.unstable_run_ids(store, NAME) == {}


# ---- suggested next labels ---------------------------------------------------------------------------------


def queue_new(store: Store, n: int = 5) -> None:
    import_runs(store, "new", runs=NEW[:n])
    queues.add_to_queue(store, NAME, run_ids=[r["id"] for r in NEW[:n]])


def strict_draft(store: Store) -> None:
    evaluators.update_draft(store, NAME, replace=("Rubric:", f"{MARKER}\n\nRubric:"))


async def test_version_disagreement_ranks_first_and_imbalance_adds_half_the_class_deficit(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    queue_new(store)
    strict_draft(store)
    script.score = lambda rid, text: 0 if MARKER in text and rid in ("u2", "u4") else 1

    report = await suggestions.suggest_labels(store, NAME, n=3)

    # Labels: 28 pass, 18 fail of 46. Fail's deficit from an even split: (1/2 − 18/46) · 2 = 5/23.
    assert [s.run_id for s in report.suggestions] == ["u2", "u4", "u1"]
    top = report.suggestions[0]
    assert top.value == pytest.approx(1 + 0.5 * 5 / 23, abs=1e-4)
    assert (top.draft_score, top.saved_score, top.predicted) == (0, 1, 0)
    assert top.reason == (
        "v1 and the draft disagree on it; the judge predicts fail (0), 39% of labels so far "
        "(under-represented)"
    )
    assert (report.suggestions[2].value, report.suggestions[2].reason) == (0.0, "no disagreement signal")
    assert (report.candidates, report.saved_version, report.judge_calls, srv.calls) == (5, 1, 10, 10)

    again = await suggestions.suggest_labels(store, NAME, n=3)
    assert (again.judge_calls, again.cache_hits, srv.calls) == (0, 10, 10)


async def test_the_budget_caps_judge_calls_run_by_run(store: Store, srv: FakeJudgeServer) -> None:
    queue_new(store)
    strict_draft(store)

    report = await suggestions.suggest_labels(store, NAME, budget=3)

    assert (srv.calls, report.judge_calls, report.unjudged) == (3, 3, 3)
    by_id = {s.run_id: s for s in report.suggestions}
    assert (by_id["u1"].draft_score, by_id["u1"].saved_score, by_id["u2"].draft_score) == (1, 1, 1)
    assert by_id["u3"].reason == "not judged within the budget"
    assert report.notes[0] == Note(
        text="3 of 5 queued run(s) have no draft verdict: the budget of 3 judge calls ran out. Raise budget to "
        "rank them; verdicts are cached, so no call is repeated."
    )


def prose_first(script: Script) -> Callable[[dict[str, Any]], Reply]:
    """The script's judge, except that a first request gets prose: every judgement takes a re-ask."""
    return lambda body: garbage("Looks right to me.") if len(body["messages"]) == 2 else script(body)


async def test_self_consistency_counts_samples_judged_requests_and_re_asks_apart(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    srv.responder = prose_first(script)
    report = await consistency.self_consistency(store, NAME, k=2, run_ids=["pp-001", "pp-002"])
    assert (report.judge_calls, report.judged, report.requests, report.reasks, srv.calls) == (4, 4, 8, 4, 8)


async def test_suggestions_count_requests_and_re_asks_apart_from_judgements(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    queue_new(store, 3)
    srv.responder = prose_first(script)
    report = await suggestions.suggest_labels(store, NAME, repeats=2)
    assert (report.judge_calls, report.requests, report.reasks, srv.calls) == (9, 18, 9, 18)


async def test_repeated_samples_that_disagree_raise_a_run(store: Store, script: Script) -> None:
    queue_new(store, 3)
    script.score = alternating({"u3": [1, 0]}, script.seen)

    report = await suggestions.suggest_labels(store, NAME, repeats=2)

    # Draft equals v1: only the draft is judged (3 calls), then 2 fresh samples per run. u3's 1st call (1) is
    # cached; its fresh samples answer 0 and 1: instability 1/2, the maximum for two classes, so value 1.
    assert report.judge_calls == 3 + 3 * 2
    assert report.suggestions[0].run_id == "u3"
    assert report.suggestions[0].flip_share == 0.5
    assert report.suggestions[0].value == pytest.approx(1.0)
    assert report.notes[0] == Note(
        text="The draft equals v1, so there is no version disagreement to rank by.",
        next_steps=[NextStep("update_draft", {"evaluator": NAME})],
    )


async def test_suggestions_need_unlabeled_queued_runs_and_sane_arguments(
    store: Store, srv: FakeJudgeServer
) -> None:
    reviews.request_review(store, NAME, ["pp-001"])  # queued again, but labeled: not a candidate
    with pytest.raises(InvalidInput) as e:
        await suggestions.suggest_labels(store, NAME)
    assert str(e.value) == "The queue of 'correctness' has no unlabeled runs to rank."
    assert e.value.next_steps == (NextStep("add_to_queue", {"evaluator": NAME}),)
    queue_new(store, 1)
    with pytest.raises(InvalidInput, match=r"^repeats=1: give 0 \(use stored samples only\) or 2 to 10"):
        await suggestions.suggest_labels(store, NAME, repeats=1)
    assert srv.calls == 0


# ---- corrected pass rate -----------------------------------------------------------------------------------


def pass_rate_judge(unlabeled_passes: int) -> Callable[[str, str], Score]:
    """Test split: 2 of 8 passes judged fail, 1 of 5 fails judged pass; u1..u{n} pass, other new runs fail."""
    wrong = {"pp-005", "pp-018", "pp-006"}

    def score(rid: str, _text: str) -> Score:
        if rid in HUMAN:
            return 1 - int(HUMAN[rid]) if rid in wrong else HUMAN[rid]
        return 1 if int(rid[1:]) <= unlabeled_passes else 0

    return score


async def test_corrected_pass_rate_matches_the_hand_computation(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    import_runs(store, "new", runs=NEW)
    _, test = holdout.examples_for(store, NAME, "test")
    assert sorted(r for r, s in test if s == 1) == TEST_PASS
    assert sorted(r for r, s in test if s == 0) == TEST_FAIL
    script.score = pass_rate_judge(6)

    report = await pass_rate.corrected_pass_rate(store, NAME, source="new")

    # TPR = 6/8, TNR = 4/5, p_obs = 6/10: θ = (0.6 + 0.8 − 1)/(0.75 + 0.8 − 1) = 0.4/0.55 = 8/11.
    assert (report.tpr.k, report.tpr.n, report.tnr.k, report.tnr.n) == (6, 8, 4, 5)
    assert report.observed == pytest.approx(0.6)
    assert report.corrected == pytest.approx(8 / 11)
    assert not report.clipped
    labeled = [(True, True)] * 6 + [(True, False)] * 2 + [(False, False)] * 4 + [(False, True)]
    expected = metrics.corrected_pass_rate([True] * 6 + [False] * 4, labeled)
    assert report.ci == expected.ci
    assert (report.n_unlabeled, report.n_labeled, report.test_evaluations) == (10, 13, 1)
    assert srv.calls == 13 + 10
    assert (report.requests, report.reasks) == (10, 0), (
        "the unlabeled runs' requests; the test run reports its own"
    )
    assert "(judged now; counted as a test evaluation)" in report.notes[1]

    again = await pass_rate.corrected_pass_rate(store, NAME, run_ids=[r["id"] for r in NEW] + ["pp-001"])
    assert srv.calls == 23  # the test run is reused and the verdicts come from the cache
    assert (again.test_evaluations, again.already_labeled, again.observed, again.requests) == (1, 1, 0.6, 0)
    assert not again.ci_widened
    assert "(reused: no new look at the test split)" in again.notes[1]


async def test_a_raw_estimate_below_zero_is_clipped(store: Store, script: Script) -> None:
    import_runs(store, "new", runs=NEW)
    script.score = pass_rate_judge(0)

    report = await pass_rate.corrected_pass_rate(store, NAME, source="new")

    # p_obs = 0: (0 + 0.8 − 1)/0.55 = −4/11, clipped to 0.
    assert (report.observed, report.corrected, report.clipped) == (0.0, 0.0, True)


async def test_fewer_unlabeled_runs_than_the_minimum_are_refused_with_the_number_needed(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    import_runs(store, "new", runs=NEW)
    holdout.ensure_split(store, NAME)
    for ids, more in ((["u1"], 9), ([r["id"] for r in NEW[:9]], 1)):
        with pytest.raises(InvalidInput) as e:
            await pass_rate.corrected_pass_rate(store, NAME, run_ids=ids)
        assert str(e.value) == (
            f"Only {len(ids)} unlabeled run(s) to estimate the pass rate of; the corrected pass rate needs at "
            f"least 10 ({more} more), since an interval over fewer says nothing about the runs they stand "
            "for. Give more unlabeled runs: more ids, or a source with more of them."
        )
    assert srv.calls == 0


def test_the_cli_refuses_a_pass_rate_over_one_run_instead_of_claiming_100_to_100(
    store: Store, srv: FakeJudgeServer
) -> None:
    from click.testing import CliRunner

    from align_mcp.cli.main import main

    import_runs(store, "new", runs=NEW)
    result = CliRunner().invoke(main, ["--db", str(store.path), "pass-rate", NAME, "--ids", "u1"])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: Only 1 unlabeled run(s) to estimate the pass rate of; the corrected pass rate needs at least 10 "
        "(9 more), since an interval over fewer says nothing about the runs they stand for. Give more unlabeled "
        "runs: more ids, or a source with more of them.\n"
    )
    assert srv.calls == 0


async def test_all_unlabeled_runs_passing_widens_the_interval_and_says_so(
    store: Store, script: Script
) -> None:
    import_runs(store, "new", runs=NEW)
    script.score = pass_rate_judge(10)

    report = await pass_rate.corrected_pass_rate(store, NAME, source="new")

    # p_obs = 1 in every resample: the bootstrap alone gives 100%–100%. Wilson(10, 10) = [0.722, 1];
    # θ(0.722) = (0.722 + 0.8 − 1)/0.55 = 0.949.
    labeled = [(True, True)] * 6 + [(True, False)] * 2 + [(False, False)] * 4 + [(False, True)]
    boot = metrics.corrected_pass_rate([True] * 10, labeled).ci
    assert (boot.low, boot.high) == (1.0, 1.0)
    wilson = metrics.wilson(10, 10)
    assert wilson is not None
    low = (wilson.low + 0.8 - 1) / (0.75 + 0.8 - 1)
    assert report.ci_widened and report.ci.low == pytest.approx(low) and report.ci.high == 1.0
    assert report.corrected == 1.0
    assert report.notes[0].endswith(f"(95% interval {low:.0%}–100%).")
    assert (
        "The judge passed all 10 unlabeled runs, so resampling them cannot show how far the pass rate of the "
        "runs they stand for could be from 100%: the interval was widened to carry the Wilson 95% interval of "
        f"that pass rate ({wilson.low:.0%}–100%) through the correction (the bootstrap alone gave 100%–100%)."
    ) in report.notes


async def test_a_judge_no_better_than_chance_is_refused_before_judging_unlabeled_runs(
    store: Store, script: Script, srv: FakeJudgeServer
) -> None:
    import_runs(store, "new", runs=NEW)
    script.score = lambda rid, _text: 1
    with pytest.raises(InvalidInput) as e:
        await pass_rate.corrected_pass_rate(store, NAME, source="new")
    assert str(e.value) == (
        "The judge is no better than chance on the labeled set (TPR=1.00, TNR=0.00, TPR + TNR <= 1), so its "
        "pass rate cannot be corrected; improve the prompt until TPR + TNR > 1."
    )
    assert srv.calls == 13
    assert not any(rid.startswith("u") for rid in script.seen)


async def test_a_missing_class_is_refused_before_any_judge_call(store: Store, srv: FakeJudgeServer) -> None:
    evaluators.create(store, "quality", ScoreType(kind="ordinal", min=1, max=5))
    queues.submit_labels(
        store,
        "quality",
        [{"run_id": r["id"], "score": 4 + i % 2} for i, r in enumerate(RUNS[:12])],
        labeler="ana",
    )
    import_runs(store, "new", runs=NEW)
    with pytest.raises(InvalidInput) as e:
        await pass_rate.corrected_pass_rate(store, "quality", source="new")
    assert str(e.value) == "No human-fail examples in the labeled set; label some failing runs first."
    assert srv.calls == 0


async def test_bad_pass_rate_requests_are_refused_before_any_judge_call(
    store: Store, srv: FakeJudgeServer
) -> None:
    import_runs(store, "new", runs=NEW[:2])
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"run_ids": ["u1"], "source": "new"}, InvalidInput, "Give run_ids or a source, not both."),
        (
            {},
            InvalidInput,
            "Say which unlabeled runs to estimate the pass rate of: run_ids=[...] or source=...",
        ),
        (
            {"source": "old"},
            NotFound,
            "No source named 'old'. Known: new, support.",
        ),
        (
            {"run_ids": ["u1", "zz"]},
            NotFound,
            "1 run id(s) are not in the store: 'zz'. Check the ids.",
        ),
        (
            {"source": "support"},
            InvalidInput,
            "All 46 run(s) already have a human label for 'correctness'; the corrected pass rate is for "
            "unlabeled runs.",
        ),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error) as e:
            await pass_rate.corrected_pass_rate(store, NAME, **kwargs)
        assert str(e.value) == message
    with Store(store.path.parent / "few.db") as few:
        import_runs(few, "support", runs=RUNS[:3])
        evaluators.create(few, NAME, ScoreType(kind="binary"))
        import_runs(few, "new", runs=NEW[:2])
        with pytest.raises(InvalidInput) as e2:
            await pass_rate.corrected_pass_rate(few, NAME, source="new")
        assert str(e2.value) == (
            "There is no test split for 'correctness' yet. A dev/test holdout needs at least 10 labeled "
            "runs; there are 3. Label 7 more."
        )
    assert srv.calls == 0
    assert holdout.info(store, NAME) is None  # not even a split was made
