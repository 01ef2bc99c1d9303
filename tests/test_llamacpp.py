"""Integration: the judge protocol against llama.cpp's own OpenAI-compatible server, not the fake judge.

The server is the prebuilt `xllamacpp` wheel run in-process on 127.0.0.1, serving SmolLM2-135M-Instruct (GGUF,
fetched by `make integration`). The model judges at chance: these tests check the protocol — structured output
through the server's JSON-schema grammar, the re-ask of an unusable reply, token usage, more concurrent calls than
the server has slots, cancellation, and the optimizer's reflection on a model that answers with a fragment.
Run them with `make integration` (they are marked `integration`, which `make test` leaves out).
"""

from __future__ import annotations

import gc
import os
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from align_mcp.core.models import JudgeSettings, Score, ScoreType
from align_mcp.engine import alignment, evaluators
from align_mcp.engine.ingest import import_runs
from align_mcp.engine.queues import submit_labels
from align_mcp.errors import AlignError, JudgeFailed, NextStep
from align_mcp.optimize.proposals import propose_prompt
from align_mcp.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parent.parent
GGUF = Path(
    os.environ.get("ALIGN_MCP_TEST_GGUF", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
)
SLOTS = 2
MODEL = "smollm2-135m"
NAME = "correctness"
# Short runs and a few sentences of instructions keep each judgment to a few hundred prompt tokens.
PROMPT = (
    "You grade answers to general-knowledge questions for a quiz app. An answer is correct when it states the "
    "right fact, number or name for the question asked; spelling and capitalisation do not matter. An answer is "
    "wrong when the fact, number or name is wrong, or when it answers another question. Judge only the answer "
    "given, not its style.\n\n"
    "<inputs>\n{{inputs}}\n</inputs>\n<outputs>\n{{outputs}}\n</outputs>"
)
QUESTIONS = [
    ("What is 2 + 2?", "4"),
    ("What is the capital of France?", "Paris"),
    ("How many legs does a spider have?", "Six"),
    ("What colour is a clear daytime sky?", "Blue"),
    ("What is 10 divided by 2?", "3"),
    ("Which planet is closest to the Sun?", "Mercury"),
    ("How many days are in a week?", "Seven"),
    ("What is the boiling point of water at sea level in Celsius?", "50"),
    ("What is 3 times 3?", "9"),
    ("Which animal says moo?", "A cat"),
]
# The human verdicts on QUESTIONS: 1 = correct, 0 = wrong.
CORRECT = [1, 1, 0, 1, 0, 1, 1, 0, 1, 0]


@dataclass(frozen=True)
class LlamaServer:
    base_url: str
    """The OpenAI-compatible base URL, ending in /v1."""
    root: str

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.root + path, timeout=30) as response:
            body: bytes = response.read()
        return body.decode()

    def counters(self) -> dict[str, float]:
        """The server's Prometheus counters (`/metrics`), by name without the `llamacpp:` prefix."""
        found = re.findall(r"^llamacpp:(\w+) ([0-9.e+-]+)$", self.get("/metrics"), flags=re.M)
        return {name: float(value) for name, value in found}


@pytest.fixture(scope="session")
def llama() -> Iterator[LlamaServer]:
    """llama.cpp's server in this process on a free loopback port, with SLOTS parallel slots; stopped at the end."""
    if not GGUF.is_file():
        pytest.fail(
            f"The test model {GGUF} is missing: `make integration` fetches it (or set ALIGN_MCP_TEST_GGUF)."
        )
    try:
        import xllamacpp
    except ImportError:
        pytest.fail("xllamacpp is not installed: `make integration` installs the integration extra.")
    params = xllamacpp.CommonParams()
    params.model.path = str(GGUF)
    params.model_alias = MODEL
    params.n_parallel = SLOTS
    # 2048 tokens per slot: the judge's and the optimizer's prompts fit; a runaway reply stops at the end.
    params.n_ctx = 2048 * SLOTS
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    params.endpoint_metrics = True
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # a free port, chosen when the server binds
    server = xllamacpp.Server(params)
    root = server.listening_address.rstrip("/")
    assert root.startswith("http://127.0.0.1:"), root
    yield LlamaServer(base_url=root + "/v1", root=root)
    del server  # the server stops when its last reference goes
    gc.collect()


@pytest.fixture
def judge_env(llama: LlamaServer, monkeypatch: pytest.MonkeyPatch) -> LlamaServer:
    """The environment's judge is the llama.cpp server (local servers need no key; the client sends a dummy)."""
    monkeypatch.setenv("OPENAI_BASE_URL", llama.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-no-key-needed")
    monkeypatch.setenv("ALIGN_MCP_JUDGE_MODEL", MODEL)
    return llama


def seed(
    store: Store, score_type: ScoreType, labels: list[Score], settings: JudgeSettings, prompt: str = PROMPT
) -> list[str]:
    """An evaluator over the first len(labels) QUESTIONS, each labeled; returns the run ids."""
    evaluators.create(store, NAME, score_type, prompt=prompt, judge=settings)
    runs = [
        {"id": f"q{i}", "inputs": {"question": q}, "outputs": {"answer": a}}
        for i, (q, a) in enumerate(QUESTIONS[: len(labels)])
    ]
    import_runs(store, "quiz", runs=runs)
    submit_labels(
        store,
        NAME,
        [
            {"run_id": run["id"], "score": score, "labeler": "ana"}
            for run, score in zip(runs, labels, strict=True)
        ],
    )
    return [str(run["id"]) for run in runs]


# Without reasoning the grammar leaves the model only `{"score": ...}` to write: a few tokens per judgment.
QUICK = JudgeSettings(reasoning=False, max_tokens=32, timeout=120, max_retries=0)


@pytest.mark.parametrize(
    ("score_type", "labels"),
    [
        (ScoreType(kind="binary"), [1, 0, 1, 0]),
        (
            ScoreType(kind="categorical", labels=["right", "partly", "wrong"]),
            ["right", "right", "wrong", "partly"],
        ),
        (ScoreType(kind="ordinal", min=1, max=5), [5, 5, 1, 4]),
    ],
    ids=["binary", "categorical", "ordinal"],
)
async def test_alignment_gets_a_valid_score_for_every_run_through_the_servers_grammar(
    store: Store, judge_env: LlamaServer, score_type: ScoreType, labels: list[Score]
) -> None:
    seed(store, score_type, labels, QUICK)
    before = judge_env.counters()

    report = await alignment.run_alignment(store, NAME, concurrency=1)

    after = judge_env.counters()
    run = report.run
    assert (run.status, run.total, run.judged, run.errors) == ("completed", 4, 4, 0)
    assert (run.requests, run.reasks) == (4, 0)
    results = store.alignment_results(run.id)
    allowed = score_type.values() if score_type.kind != "categorical" else score_type.labels
    assert [r.judge_score in (allowed or []) and r.error is None for r in results] == [True] * 4
    # The tokens recorded are the tokens the server counted: every prompt token (processed or reused from the
    # server's prompt cache) and every generated one.
    prompt = sum(r.prompt_tokens or 0 for r in results)
    cached = sum(r.cached_tokens or 0 for r in results)
    completion = sum(r.completion_tokens or 0 for r in results)
    assert all((r.prompt_tokens or 0) > 0 and (r.completion_tokens or 0) > 0 for r in results)
    assert completion == after["tokens_predicted_total"] - before["tokens_predicted_total"]
    assert cached == after["prompt_tokens_cached_total"] - before["prompt_tokens_cached_total"]
    assert prompt == cached + after["prompt_tokens_total"] - before["prompt_tokens_total"]
    assert (run.prompt_tokens, run.completion_tokens) == (prompt, completion)
    assert run.metrics is not None and run.metrics.n == 4


async def test_a_reply_cut_short_is_asked_again_then_recorded_as_the_examples_error(
    store: Store, judge_env: LlamaServer
) -> None:
    # One token holds no JSON object: the server's grammar lets a reply open with whitespace or a ```json fence,
    # and SmolLM2 does (the reply is the re-ask's, which the error quotes).
    seed(store, ScoreType(kind="binary"), [1], JudgeSettings(max_tokens=1, timeout=120, max_retries=0))

    with pytest.raises(JudgeFailed) as failed:
        await alignment.run_alignment(store, NAME, concurrency=1)

    assert str(failed.value) == (
        "Alignment run 1 failed: 0 judged, 1 errors. Cause: unparseable reply after a re-ask: reply is not "
        "JSON: '```' (1 example). Fix the judge, then judge the run again."
    )
    (result,) = store.alignment_results(1)
    assert (result.error, result.judge_score) == (
        "unparseable reply after a re-ask: reply is not JSON: '```'",
        None,
    )
    assert (result.completion_tokens, (result.prompt_tokens or 0) > 0) == (
        2,
        True,
    )  # one token from each request
    run = alignment.summary(store, 1)
    assert (run.status, run.requests, run.reasks) == ("failed", 2, 1)


async def test_more_concurrent_calls_than_server_slots_all_complete(
    store: Store, judge_env: LlamaServer
) -> None:
    labels: list[Score] = [1, 0, 1, 0, 1, 1, 0, 1]
    seed(store, ScoreType(kind="binary"), labels, QUICK)
    before = judge_env.counters()

    report = await alignment.run_alignment(store, NAME, concurrency=4 * SLOTS)

    after = judge_env.counters()
    assert (report.run.status, report.run.judged, report.run.errors, report.run.requests) == (
        "completed",
        8,
        0,
        8,
    )
    # The server queued the calls beyond its slots (none was refused or retried) and decoded its slots together.
    assert after["n_decode_total"] > before["n_decode_total"]
    assert after["requests_processing"] == 0


async def test_a_cancelled_run_keeps_its_results_and_resumes_on_the_same_server(
    store: Store, judge_env: LlamaServer
) -> None:
    labels: list[Score] = [1, 0, 1, 0, 1, 1]
    seed(store, ScoreType(kind="binary"), labels, QUICK)

    # Cancelled as the second result lands, while the other slot is still generating a verdict.
    with anyio.CancelScope() as scope:

        async def cancel_after_two(done: int, total: int, message: str) -> None:
            if done >= 2:
                scope.cancel()

        await alignment.run_alignment(store, NAME, concurrency=SLOTS, on_progress=cancel_after_two)
    assert scope.cancelled_caught

    row = store.alignment_run_row(1)
    assert row is not None and row.status == "interrupted"
    kept = store.alignment_results(1)
    assert len(kept) in (2, 3) and all(r.error is None for r in kept)
    assert judge_env.get("/health").strip() == '{"status":"ok"}'

    report = await alignment.resume(store, 1, concurrency=SLOTS)

    assert (report.run.status, report.run.judged, report.run.errors) == ("completed", 6, 0)
    assert report.run.requests == 6  # the kept results were not judged again


async def test_a_tiny_models_fragment_of_a_rewrite_is_refused_with_a_clear_error_and_nothing_proposed(
    store: Store, judge_env: LlamaServer
) -> None:
    # Ten labels of both classes: a dev/test split is made, and the chance-level judge misaligns on dev. The
    # reflection's reply fits the schema (the server's grammar sees to that), but what SmolLM2 writes in it is a
    # fragment, not revised instructions: it is asked again once, then refused.
    seed(store, ScoreType(kind="binary"), list(CORRECT), QUICK)

    with pytest.raises(AlignError) as failed:
        await propose_prompt(store, NAME, mode="reflect", budget=60)

    assert type(failed.value) is AlignError
    # SmolLM2 answers with one character for the 338 of PROMPT's instructions, twice. On a machine whose cores
    # are taken by other work it generates at about one token a second, and the reflection call can hit the
    # judge's timeout first: that ends the same way, with its own clear cause.
    assert str(failed.value) in (
        "The reflection model did not return usable instructions (the revision is 1 character long, under half "
        "of the current instructions (338): reply with the complete revised "
        "text, not a summary or a fragment). Try the gepa mode, or edit the draft by hand from the failure modes.",
        "The reflection model did not return usable instructions (timed out after 120s (after 1 attempt)). Try the "
        "gepa mode, or edit the draft by hand from the failure modes.",
    )
    assert failed.value.next_steps[0] == NextStep("propose_prompt", {"evaluator": NAME, "mode": "gepa"})
    assert store.proposals(NAME) == []
    # What came before the rewrite is kept: the draft judged on dev, and its failure modes.
    (run,) = alignment.list_runs(store, NAME)
    assert (run.split, run.status, run.errors) == ("dev", "completed", 0)
    assert store.latest_failure_analysis(run.id) is not None
