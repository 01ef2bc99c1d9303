"""The `compare` command: the same prompt judged by several models, side by side."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from align_mcp import config
from align_mcp.cli.main import PositiveInt, command, split_option, store_of
from align_mcp.cli.render import emit, kappa, notes, pct, table, with_progress
from align_mcp.core.comparison import JudgeModel, ModelComparison
from align_mcp.core.models import Rate

MODEL_SPEC = re.compile(r"(?P<model>.+?)(?:@(?P<url>https?://[^#]+))?(?:#(?P<key>[^#]*))?")


class ModelSpec(click.ParamType[JudgeModel]):
    """MODEL, MODEL@BASE_URL, MODEL#KEY_ENV or MODEL@BASE_URL#KEY_ENV."""

    name = "model"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> JudgeModel:
        if isinstance(value, JudgeModel):
            return value
        match = MODEL_SPEC.fullmatch(str(value).strip())
        if match is None or not match["model"].strip() or match["key"] == "":
            self.fail(
                f"{value!r} is not MODEL, MODEL@BASE_URL, MODEL#KEY_ENV or MODEL@BASE_URL#KEY_ENV (e.g. "
                "llama3.1@http://localhost:11434/v1 or gpt-4.1-mini#OPENAI_API_KEY).",
                param,
                ctx,
            )
        return JudgeModel(model=match["model"].strip(), base_url=match["url"], api_key_env=match["key"])


def _rate(r: Rate | None) -> str:
    if r is None or r.value is None:
        return "n/a"
    return pct(r.value) if r.ci is None else f"{pct(r.value)} ({r.ci.low:.0%}–{r.ci.high:.0%})"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def print_comparison(c: ModelComparison) -> None:
    click.echo(
        f"{c.evaluator}, {c.prompt_ref}: {len(c.models)} judge models on {c.examples} {c.split} examples"
    )
    rows = []
    for r in c.models:
        m = r.metrics
        binary = m is not None and m.kind == "binary"
        vs = "best" if r.label == c.best else "n/a"
        if r.vs_best is not None and r.vs_best.p_value is not None:
            vs = f"p = {r.vs_best.p_value:.2g}"
        rows.append(
            [
                r.label,
                _rate(m.agreement) if m else "n/a",
                kappa(m.kappa if m else None),
                _rate(m.tpr) if binary and m else "",
                _rate(m.tnr) if binary and m else "",
                r.errors,
                f"{r.prompt_tokens:,} / {r.completion_tokens:,}",
                "no price" if r.cost_usd is None else f"${r.cost_usd:.4g}",
                f"{_ms(r.latency_p50_ms)} / {_ms(r.latency_p95_ms)}",
                vs,
                {True: "yes", False: "no", None: ""}[r.pareto],
            ]
        )
    front = "front" if c.pareto_basis is None else f"front ({c.pareto_basis})"
    table(
        [
            "model",
            "agreement (95% CI)",
            "kappa",
            "TPR",
            "TNR",
            "errors",
            "tokens in / out",
            "cost",
            "latency ms p50 / p95",
            "McNemar vs best",
            front,
        ],
        rows,
    )
    notes(c.notes)


@command("compare")
@click.argument("evaluator")
@click.option(
    "--model",
    "models",
    type=ModelSpec(),
    multiple=True,
    required=True,
    help="A judge model, given 2–10 times: MODEL, MODEL@BASE_URL, MODEL#KEY_ENV or MODEL@BASE_URL#KEY_ENV "
    "(KEY_ENV names the variable holding that endpoint's key).",
)
@click.option("--prompt", default="draft", show_default=True, help="draft, latest, or a version such as v2.")
@split_option
@click.option(
    "--prices",
    "prices_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"TOML file of model prices (default ${config.ENV_PRICES}, else {config.default_prices_path()}).",
)
@click.option(
    "--concurrency",
    type=PositiveInt("the number of parallel judge calls"),
    help=f"Parallel judge calls over all models together (default ${config.ENV_CONCURRENCY} or 8).",
)
@click.pass_context
def compare_cmd(
    ctx: click.Context,
    evaluator: str,
    models: tuple[JudgeModel, ...],
    prompt: str,
    split: str,
    prices_file: Path | None,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Judge the reference set with one prompt per model; compare agreement, kappa, TPR/TNR, cost and latency.

    Cost needs prices, in USD per million tokens, in a TOML file with one table per model:
    [models."gpt-4.1-mini"] input = 0.40, cached_input = 0.10, output = 1.60.
    """
    from align_mcp.engine.compare import compare_models

    store = store_of(ctx)
    result = with_progress(
        as_json,
        lambda progress: compare_models(
            store,
            evaluator,
            list(models),
            prompt,
            split=split,
            concurrency=concurrency,
            on_progress=progress,
            prices_file=prices_file,
        ),
    )
    emit(result, as_json, lambda: print_comparison(result))
