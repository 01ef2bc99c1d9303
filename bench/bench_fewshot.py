"""Few-shot examples and provider prompt caching: the share of each judge prompt in the prefix shared by every
request of a run, with {{few_shot_examples}} off and on.

The block of corrected examples is the same for every request of a run and sits before the example, so it
should join the shared prefix rather than break it. Measured from the requests the fake judge receives while
align-mcp judges the dev split of the sample data (examples/support_runs.jsonl): the shipped binary rubric (v1),
then the same rubric showing k=5 corrected dev examples (the judge here passes everything, so every human fail
on dev is a correction).
"""

from __future__ import annotations

import sys

from _common import BenchResult, Figure, at_least
from bench_prefix import sample_alignment, tokenizer

NAME = "fewshot"
DESCRIPTION = "shared-prefix share of judge prompts with few-shot examples off and on"


def run(quick: bool = False) -> BenchResult:
    from align_mcp.engine import evaluators
    from align_mcp.optimize.few_shot_search import with_variable

    result = BenchResult(NAME)
    tokenizer_name, _ = tokenizer()
    k = 2 if quick else 5
    with sample_alignment("fewshot") as (store, measure):
        off = measure("dev")
        draft = evaluators.get(store, "correctness").draft
        evaluators.update_draft(store, "correctness", prompt=with_variable(draft), few_shot_settings=f"k={k}")
        on = measure("dev")
    result.add(
        Figure(
            f"few-shot off (v1): prompt tokens in the common prefix ({off['requests']:.0f} requests)",
            off["tokens_share"],
            "%",
        ),
        Figure(
            f"few-shot on (k={k}): prompt tokens in the common prefix",
            on["tokens_share"],
            "%",
            "≥ off",
            at_least(on["tokens_share"], off["tokens_share"]),
        ),
        Figure(
            "  shared prefix with few-shot on",
            on["prefix_tokens"],
            "tokens",
            note=f"off {off['prefix_tokens']:.0f}; mean prompt {off['mean_tokens']:.0f} -> {on['mean_tokens']:.0f}",
        ),
        Figure(
            "  tokens per request outside the shared prefix, on / off",
            on["mean_example_tokens"] / off["mean_example_tokens"],
            "x",
        ),
    )
    result.details = {"off": off, "on": on, "k": k, "tokenizer": tokenizer_name}
    return result


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    for f in out.figures:
        print(f"{f.name:80s} {f.shown()}")
    print(out.details)
