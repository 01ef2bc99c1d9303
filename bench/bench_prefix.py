"""Provider prompt caching: how much of each judge prompt is a prefix shared by every request of a run.

Providers cache a prompt's longest previously-seen prefix, so the share of prompt tokens that sit in the
prefix common to all requests bounds what prompt caching can save. Measured from the requests the fake judge
receives while align-mcp judges the sample data (examples/support_runs.jsonl) with the shipped binary rubric
(v1) and with the sample's refined rubric (the demo's v2).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from _common import FAKE_KEY, BenchResult, Figure, at_least, env, sample_runs

NAME = "prefix"
DESCRIPTION = "share of judge prompt tokens in the prefix common to all requests of a run"
TOKEN = re.compile(r"\w+|[^\w\s]|\s+")
Tokenizer = Callable[[str], list[Any]]


def tokenizer() -> tuple[str, Tokenizer]:
    """OpenAI's o200k_base (GPT-4o/4.1) when tiktoken and an offline copy of its table are installed (the
    optimize extra brings both, through litellm), else a word/punctuation regex that approximates it."""
    try:
        import tiktoken

        spec = importlib.util.find_spec("litellm")  # finds the package without importing it (slow)
        if spec is not None and spec.origin is not None:
            cache = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
        enc = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", enc.encode
    except Exception:
        return "regex \\w+|[^\\w\\s]|\\s+ (approximates BPE)", TOKEN.findall


def serialized(body: dict[str, Any]) -> str:
    """The request's messages in the order a provider tokenizes them (role, then content)."""
    return "".join(f"<|{m.get('role')}|>{m.get('content')}<|end|>" for m in body.get("messages", []))


def _common_prefix(items: list[Any]) -> int:
    first = items[0]
    n = min(len(x) for x in items)
    for i in range(n):
        c = first[i]
        if any(x[i] != c for x in items):
            return i
    return n


def prefix_share(bodies: list[dict[str, Any]], encode: Tokenizer = TOKEN.findall) -> dict[str, float]:
    """Share of characters and of tokens that lie in the prefix common to all requests."""
    texts = [serialized(b) for b in bodies]
    tokens = [encode(t) for t in texts]
    lcp_chars = _common_prefix(texts)
    lcp_tokens = _common_prefix(tokens)
    return {
        "requests": len(texts),
        "chars_share": 100 * lcp_chars * len(texts) / sum(len(t) for t in texts),
        "tokens_share": 100 * lcp_tokens * len(tokens) / sum(len(t) for t in tokens),
        "prefix_tokens": lcp_tokens,
        "mean_tokens": sum(len(t) for t in tokens) / len(tokens),
        "mean_example_tokens": sum(len(t) for t in tokens) / len(tokens) - lcp_tokens,
    }


@contextmanager
def sample_alignment(name: str) -> Iterator[tuple[Any, Callable[[str], dict[str, float]]]]:
    """A temporary store holding the sample runs and a binary `correctness` evaluator, judged by a fake judge,
    and a measure: judge one split with the current draft and give `prefix_share` of the requests it sent."""
    from align_mcp.core.models import ScoreType
    from align_mcp.engine import alignment as align
    from align_mcp.engine import evaluators, ingest
    from align_mcp.store import Store
    from align_mcp.testing.fakejudge import FakeJudgeServer

    _, encode = tokenizer()
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp,
        FakeJudgeServer() as srv,
        env(
            ALIGN_MCP_JUDGE_BASE_URL=srv.base_url, ALIGN_MCP_JUDGE_API_KEY=FAKE_KEY, ALIGN_MCP_JUDGE_MODEL="m"
        ),
        Store(os.path.join(tmp, f"{name}.db")) as store,
    ):
        evaluators.create(store, "correctness", ScoreType(kind="binary"))
        ingest.import_runs(store, "support", runs=sample_runs())

        def measure(split: str) -> dict[str, float]:
            before = len(srv.chat_bodies)
            anyio.run(lambda: align.run_alignment(store, "correctness", split=split, compare=False))
            return prefix_share(srv.chat_bodies[before:], encode)

        yield store, measure


def _demo_instructions() -> str:
    """The rules `align-mcp demo`'s reflect proposal adds before "Think step by step" (its v2)."""
    from align_mcp.testing.simulated import HANDOFF_RULE, NUMBERS_RULE, RULES_HEADING

    return f"{RULES_HEADING}\n- {NUMBERS_RULE}\n- {HANDOFF_RULE}\n\nThink step by step"


def run(quick: bool = False) -> BenchResult:
    from align_mcp.engine import evaluators

    result = BenchResult(NAME)
    tokenizer_name, _ = tokenizer()
    with sample_alignment("prefix") as (store, measure):
        v1 = measure("all")
        evaluators.update_draft(store, "correctness", replace=("Think step by step", _demo_instructions()))
        v2 = measure("all")
    result.add(
        Figure(
            f"shipped rubric (v1): prompt tokens in the common prefix ({v1['requests']:.0f} requests)",
            v1["tokens_share"],
            "%",
            "≥ 80%",
            at_least(v1["tokens_share"], 80),
        ),
        Figure("  same, counted in characters", v1["chars_share"], "%"),
        Figure(
            "sample's refined rubric (demo v2): prompt tokens in the common prefix",
            v2["tokens_share"],
            "%",
            "≥ 80%",
            at_least(v2["tokens_share"], 80),
        ),
        Figure("  same, counted in characters", v2["chars_share"], "%"),
        Figure(
            "  shared prefix (v2)",
            v2["prefix_tokens"],
            "tokens",
            note=f"mean prompt {v2['mean_tokens']:.0f} tokens",
        ),
        Figure(
            "shared prefix a rubric needs for 80% on these examples (4 × the example's tokens)",
            round(4 * v2["mean_example_tokens"]),
            "tokens",
        ),
    )
    result.details = {"v1": v1, "v2": v2, "tokenizer": tokenizer_name}
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:80s} {f.shown()}")
    print(out.details)
