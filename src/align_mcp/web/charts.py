"""Charts of an evaluator's alignment: one Vega-Lite spec per chart (Altair), rendered as SVG or PNG (vl-convert).

Both libraries come with the `charts` extra and load only when a chart is drawn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from align_mcp.core.models import AlignmentSummary, ScoreType
from align_mcp.errors import AlignError, InvalidInput, NextStep

if TYPE_CHECKING:
    from align_mcp.store import Store

ChartKind = Literal["agreement", "confusion"]
CHART_KINDS: tuple[ChartKind, ...] = ("agreement", "confusion")
INSTALL = "pip install 'align-mcp[charts]'"


def _libraries() -> tuple[Any, Any]:
    try:
        import altair
        import vl_convert
    except ImportError as e:
        raise AlignError(f"Charts need Altair and vl-convert ({e.name} is missing): {INSTALL}.") from e
    return altair, vl_convert


def _version_key(summary: AlignmentSummary) -> tuple[int, int]:
    return (1, 0) if summary.version is None else (0, summary.version)


def versions_on_one_split(runs: Sequence[AlignmentSummary]) -> tuple[str, list[AlignmentSummary]]:
    """The latest completed run of each saved version (and the draft) on one split: the split of the latest
    completed run that is not the held-out test split (or of any, when only test runs exist)."""
    done = [r for r in runs if r.status == "completed" and r.metrics is not None and r.metrics.n]
    if not done:
        return "", []
    latest = max(
        (r for r in done if r.split != "test"), key=lambda r: r.id, default=max(done, key=lambda r: r.id)
    )
    chosen: dict[str, AlignmentSummary] = {}
    for r in sorted(done, key=lambda r: r.id):
        if r.split == latest.split:
            chosen[r.prompt_ref] = r
    return latest.split, sorted(chosen.values(), key=_version_key)


def agreement_rows(runs: Sequence[AlignmentSummary]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in runs:
        m = r.metrics
        assert m is not None
        if m.agreement.value is not None:
            ci = m.agreement.ci
            rows.append(
                {
                    "prompt": r.prompt_ref,
                    "measure": "agreement",
                    "value": m.agreement.value,
                    "low": ci.low if ci else m.agreement.value,
                    "high": ci.high if ci else m.agreement.value,
                    "n": m.n,
                }
            )
        if m.kappa is not None:
            kci = m.kappa_ci
            rows.append(
                {
                    "prompt": r.prompt_ref,
                    "measure": "kappa",
                    "value": m.kappa,
                    "low": kci.low if kci else m.kappa,
                    "high": kci.high if kci else m.kappa,
                    "n": m.n,
                }
            )
    return rows


def agreement_spec(evaluator: str, split: str, runs: Sequence[AlignmentSummary]) -> dict[str, Any]:
    """Agreement (with its Wilson 95% interval) and Cohen's κ (with its asymptotic 95% interval) per saved version
    and the draft, on one split."""
    alt, _ = _libraries()
    rows = agreement_rows(runs)
    order = [r.prompt_ref for r in runs]
    data = alt.Data(values=rows)
    x = alt.X("prompt:N", sort=order, title="prompt", axis=alt.Axis(labelAngle=0))
    base = alt.Chart(data).encode(x=x)
    agreement = base.transform_filter("datum.measure == 'agreement'")
    left = alt.layer(
        agreement.mark_rule(strokeWidth=2).encode(
            y=alt.Y("low:Q", scale=alt.Scale(domain=[0, 1]), title="agreement (95% interval)"), y2="high:Q"
        ),
        agreement.mark_point(filled=True, size=80).encode(
            y="value:Q", tooltip=["prompt:N", "value:Q", "n:Q"]
        ),
    ).properties(width=max(120, 60 * len(order)), height=220, title="Agreement")
    kappa = base.transform_filter("datum.measure == 'kappa'")
    right = alt.layer(
        kappa.mark_rule(strokeWidth=2, color="#8a5a00").encode(
            y=alt.Y("low:Q", scale=alt.Scale(domain=[-1, 1]), title="Cohen's κ (95% interval)"), y2="high:Q"
        ),
        kappa.mark_point(filled=True, size=80, shape="diamond", color="#8a5a00").encode(
            y="value:Q", tooltip=["prompt:N", "value:Q", "n:Q"]
        ),
    ).properties(width=max(120, 60 * len(order)), height=220, title="κ")
    chart = alt.hconcat(left, right).properties(
        title=f"{evaluator}: saved versions and the draft on the {split} split"
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec


def confusion_spec(evaluator: str, run: AlignmentSummary, score_type: ScoreType) -> dict[str, Any]:
    """The confusion matrix of one alignment run: human score by judge score, with counts."""
    alt, _ = _libraries()
    m = run.metrics
    assert m is not None
    names = {"1": "pass", "0": "fail"} if score_type.kind == "binary" else {}
    values = [str(v) for v in score_type.values()]
    shown = [names.get(v, v) for v in values]
    rows = [
        {"human": names.get(h, h), "judge": names.get(j, j), "count": m.confusion.get(h, {}).get(j, 0)}
        for h in values
        for j in values
    ]
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X("judge:N", sort=shown, title="judge", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("human:N", sort=shown, title="human"),
    )
    chart = alt.layer(
        base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None)),
        base.mark_text(fontSize=14).encode(text="count:Q"),
    ).properties(
        width=max(160, 50 * len(values)),
        height=max(160, 50 * len(values)),
        title=f"{evaluator}: run #{run.id} ({run.prompt_ref}, {run.split}), n = {m.n}",
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec


def chart_spec(
    store: Store, evaluator: str, kind: ChartKind, alignment_run: int | None = None
) -> dict[str, Any]:
    """The Vega-Lite spec of one chart of an evaluator, from the engine's alignment runs."""
    from align_mcp.engine import alignment
    from align_mcp.engine.evaluators import get

    _libraries()  # a missing extra is the first thing to say
    ev = get(store, evaluator)
    if kind not in CHART_KINDS:
        raise InvalidInput(f"No chart named {kind!r}; charts: {', '.join(CHART_KINDS)}.")
    runs = alignment.list_runs(store, evaluator)
    no_runs = AlignError(
        f"Evaluator {evaluator!r} has no completed alignment run to chart yet.",
        NextStep("run_alignment", {"evaluator": evaluator}),
    )
    if kind == "agreement":
        split, chosen = versions_on_one_split(runs)
        if not chosen:
            raise no_runs
        return agreement_spec(evaluator, split, chosen)
    if alignment_run is None:
        done = [r for r in runs if r.status == "completed" and r.metrics is not None]
        if not done:
            raise no_runs
        run = max(done, key=lambda r: r.id)
    else:
        found = [r for r in runs if r.id == alignment_run]
        if not found:
            raise InvalidInput(f"Alignment run {alignment_run} is not a run of {evaluator!r}.")
        run = found[0]
        if run.metrics is None:
            raise InvalidInput(f"Alignment run {alignment_run} has no metrics yet ({run.status}).")
    return confusion_spec(evaluator, run, ev.score_type)


_SCRIPTISH = re.compile(r"<script|\son\w+\s*=|javascript:", re.IGNORECASE)


def svg(spec: dict[str, Any]) -> str:
    """The chart as SVG text (served as an image: the page never inlines it)."""
    _, vlc = _libraries()
    out: str = vlc.vegalite_to_svg(spec)
    if _SCRIPTISH.search(out):  # vl-convert writes plain shapes and text; anything else is not ours to serve
        raise AlignError("The chart renderer produced markup with script in it; refusing to serve it.")
    return out


def png(spec: dict[str, Any], scale: float = 2.0) -> bytes:
    """The chart as PNG bytes."""
    _, vlc = _libraries()
    out: bytes = vlc.vegalite_to_png(spec, scale=scale)
    return out
