"""Pair two sources (two experiments over one dataset) into pairwise runs by a shared example key."""

from __future__ import annotations

import json
from dataclasses import dataclass

from align_mcp.core.models import JsonDict, Note
from align_mcp.core.pairwise import PairReport
from align_mcp.core.templates import lookup
from align_mcp.core.text import shown
from align_mcp.engine.evaluators import check_name
from align_mcp.errors import Conflict, InvalidInput, NextStep, NotFound
from align_mcp.store import RunRow, Store

DEFAULT_KEY = "metadata.reference_example_id"
"""Where LangSmith experiment runs keep the dataset example they answered."""
_KEY_ROOTS = ("id", "inputs", "metadata", "reference_outputs")


@dataclass(frozen=True)
class _PairRun:
    id: str
    inputs: JsonDict
    outputs: JsonDict
    reference_outputs: JsonDict | None
    metadata: JsonDict
    outputs_b: JsonDict | None


def pair_sources(
    store: Store,
    source_a: str,
    source_b: str,
    into: str,
    key: str = DEFAULT_KEY,
    *,
    skip_unmatched: bool = False,
) -> PairReport:
    """Make one pairwise run per example key found in both sources: the run of `source_a` gives output A (and the
    inputs, reference outputs and metadata), the run of `source_b` output B. Stored in source `into`.

    Every run must have the key, and no key may repeat within a source. A key found in one source only is an
    error unless `skip_unmatched`, which leaves those runs out and lists them. Re-pairing stores nothing twice.
    """
    check_name(into, "source")
    if source_a == source_b:
        raise InvalidInput(f"Both sources are {source_a!r}; pair two different experiments over one dataset.")
    if key.split(".")[0] not in _KEY_ROOTS:
        raise InvalidInput(
            f"Key {key!r} is not a path in a run; use id or a dotted path under inputs, metadata or "
            f"reference_outputs, e.g. {DEFAULT_KEY}."
        )
    if into in (source_a, source_b):
        raise InvalidInput(f"Store the pairs in a new source, not in {into!r}, one of the two being paired.")
    target = store.get_source(into)
    if target is not None and target.kind != "experiment":
        raise Conflict(f"Source {into!r} holds {target.kind} runs; store the pairs in another source.")
    by_key_a = _by_key(store, source_a, key)
    by_key_b = _by_key(store, source_b, key)
    only_a = [run.id for k, run in by_key_a.items() if k not in by_key_b]
    only_b = [run.id for k, run in by_key_b.items() if k not in by_key_a]
    if (only_a or only_b) and not skip_unmatched:
        parts = [
            f"{len(ids)} run(s) of {name!r} have a {key} that no run of {other!r} has: {shown(ids)}"
            for ids, name, other in ((only_a, source_a, source_b), (only_b, source_b, source_a))
            if ids
        ]
        raise InvalidInput(
            "; ".join(parts)
            + ". Pair the experiments over the same dataset examples, or skip the unmatched runs."
        )
    runs: list[_PairRun] = []
    differ: list[str] = []
    for k, a in by_key_a.items():
        b = by_key_b.get(k)
        if b is None:
            continue
        pair_id = f"{a.id}|{b.id}"
        if a.inputs != b.inputs:
            differ.append(pair_id)
        metadata = {**a.metadata, "pair_key": json.loads(k), "run_a": a.id, "run_b": b.id}
        metadata.update(source_a=source_a, source_b=source_b)
        reference = a.reference_outputs if a.reference_outputs is not None else b.reference_outputs
        runs.append(_PairRun(pair_id, a.inputs, a.outputs, reference, metadata, b.outputs))
    if not runs:
        raise InvalidInput(
            f"No example {key} is in both {source_a!r} and {source_b!r}, so there is nothing to pair."
        )
    with store.transaction():
        if target is None:
            store.insert_source(into, "experiment")
        inserted = store.insert_runs(into, runs)
    notes = []
    if differ:
        notes.append(
            Note(
                text=f"{len(differ)} pair(s) joined runs whose inputs differ ({shown(differ)}); they show the "
                f"inputs of {source_a!r}. Check that {key} names the same example in both sources."
            )
        )
    if only_a or only_b:
        notes.append(Note(text=f"{len(only_a) + len(only_b)} unmatched run(s) were left out."))
    notes.append(
        Note(
            text=f"Create an evaluator with the pairwise score type and queue source {into!r} to label the pairs.",
            next_steps=[NextStep("create_evaluator"), NextStep("add_to_queue")],
        )
    )
    return PairReport(
        source=into,
        source_a=source_a,
        source_b=source_b,
        key=key,
        pairs=len(runs),
        inserted=inserted,
        unmatched_a=only_a,
        unmatched_b=only_b,
        inputs_differ=differ,
        notes=notes,
    )


def _by_key(store: Store, source: str, key: str) -> dict[str, RunRow]:
    """The runs of a source by their key value (as canonical JSON); every run must have one, and only one run each."""
    if store.get_source(source) is None:
        known = [s.name for s in store.list_sources()]
        raise NotFound(
            f"No source named {source!r}. Known: {', '.join(known) or 'none'}.", NextStep("import_runs")
        )
    ids = store.run_ids(source=source)
    runs = store.get_runs(ids)
    out: dict[str, RunRow] = {}
    missing: list[str] = []
    repeated: dict[str, list[str]] = {}
    for rid in ids:
        run = runs.get(rid)
        if run is None:
            continue
        if run.outputs_b is not None:
            raise InvalidInput(
                f"Run {rid!r} of {source!r} is already a pairwise run (two outputs); pair sources of single runs."
            )
        found, value = lookup(run.as_dict(), key)
        if not found or value is None:
            missing.append(rid)
            continue
        canonical = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if canonical in out:
            repeated.setdefault(canonical, [out[canonical].id]).append(rid)
            continue
        out[canonical] = run
    if missing:
        raise InvalidInput(
            f"{len(missing)} of {len(ids)} run(s) of {source!r} have no {key}: {shown(missing)}. Pair by a key "
            f"every run has (LangSmith experiment runs keep their example in {DEFAULT_KEY})."
        )
    if repeated:
        first = next(iter(repeated.values()))
        raise InvalidInput(
            f"{len(repeated)} {key} value(s) repeat within {source!r}, e.g. on runs {shown(first)}; each example "
            "may have one run per source (keep one repetition per experiment)."
        )
    return out
