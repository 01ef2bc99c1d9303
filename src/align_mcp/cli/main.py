"""The `align-mcp` command group: the shared --db and --json options, one-line errors, and `serve`."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from align_mcp import __version__, config
from align_mcp.errors import AlignError

if TYPE_CHECKING:
    from align_mcp.store import Store

F = TypeVar("F", bound=Callable[..., Any])

SUBCOMMANDS = {
    "import": "runs:import_cmd",
    "sources": "runs:sources_cmd",
    "show-run": "runs:show_run_cmd",
    "pair": "runs:pair_cmd",
    "evaluator": "evaluators:evaluator_group",
    "draft": "evaluators:draft_group",
    "save": "evaluators:save_cmd",
    "versions": "evaluators:versions_cmd",
    "restore": "evaluators:restore_cmd",
    "queue": "labels:queue_group",
    "label": "labels:label_cmd",
    "labels": "labels:labels_cmd",
    "align": "alignment:align_cmd",
    "resume": "alignment:resume_cmd",
    "runs": "alignment:runs_cmd",
    "report": "alignment:report_cmd",
    "misaligned": "alignment:misaligned_cmd",
    "compare": "compare:compare_cmd",
    "triage": "diagnose:triage_cmd",
    "review": "diagnose:review_cmd",
    "reviews": "diagnose:reviews_cmd",
    "adjudicate": "diagnose:adjudicate_cmd",
    "consistency": "diagnose:consistency_cmd",
    "suggest": "diagnose:suggest_cmd",
    "pass-rate": "diagnose:pass_rate_cmd",
    "failures": "optimize:failures_cmd",
    "propose": "optimize:propose_cmd",
    "proposals": "optimize:proposals_cmd",
    "proposal": "optimize:proposal_cmd",
    "apply": "optimize:apply_cmd",
    "demo": "demo:demo_cmd",
    "ui": "ui:ui_cmd",
    "chart": "charts:chart_cmd",
    "export": "data:export_cmd",
    "card": "data:card_cmd",
}
"""Each subcommand's name -> "module:attribute" of the click command within align_mcp.cli."""


class LazyGroup(click.Group):
    """A group whose subcommands are imported from their module when first looked up (click's lazily loaded
    subcommands), so `align-mcp serve` starts without the rest of the command line."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attribute = self.lazy[cmd_name].split(":")
            found = getattr(importlib.import_module(f"align_mcp.cli.{module}"), attribute)
            if not isinstance(found, click.Command):
                raise TypeError(f"align_mcp.cli.{module}.{attribute} is not a click command")
            self.add_command(found, cmd_name)
        return super().get_command(ctx, cmd_name)


class PositiveInt(click.ParamType[int]):
    """An integer option that must be at least 1, refused with what it counts (e.g. "the sample size")."""

    name = "integer"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number: int = click.INT.convert(value, param, ctx)
        if number < 1:
            self.fail(f"{number}: {self.what} must be a positive number (at least 1).", param, ctx)
        return number


def store_of(ctx: click.Context) -> Store:
    """The store of this invocation, opened on first use and closed when the command ends."""
    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        from align_mcp.store import open_store

        obj["store"] = open_store(obj.get("db"))
        ctx.call_on_close(obj["store"].close)
    store: Store = obj["store"]
    return store


split_option = click.option(
    "--split",
    type=click.Choice(["auto", "dev", "test", "all"]),
    default="auto",
    show_default=True,
    help="auto = dev once a holdout exists; test is held out, and every look is counted.",
)
"""The labeled runs a command judges (`align`, `compare`)."""


def command(name: str, group: click.Group | None = None) -> Callable[[F], click.Command]:
    """A command with --json whose AlignErrors print as one `Error:` line, with the next step as a command,
    and exit with status 1. Added to `group` when one is given."""

    def decorate(fn: F) -> click.Command:
        @functools.wraps(fn)
        def run(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except AlignError as e:
                from align_mcp.cli.render import error_text

                raise click.ClickException(error_text(e)) from e

        run = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(run)
        made = click.command(name)(run)
        if group is not None:
            group.add_command(made)
        return made

    return decorate


@click.group(cls=LazyGroup, lazy=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="align-mcp")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=config.ENV_DB,
    help=f"SQLite store (default: ${config.ENV_DB} or the user data directory).",
)
@click.pass_context
def main(ctx: click.Context, db: Path | None) -> None:
    """Align an LLM-as-judge evaluator with human labels.

    The loop: import runs -> create an evaluator -> queue runs -> label them -> align -> look at the
    misaligned cases -> edit the draft -> align again -> save. `align-mcp serve` runs the same loop as an MCP
    server for Claude or VS Code.
    """
    ctx.ensure_object(dict)["db"] = db


@main.command("serve")
@click.option("--http", "use_http", is_flag=True, help="Streamable HTTP instead of stdio.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help=f"HTTP bind address (other than loopback needs ${config.ENV_TOKEN}).",
)
@click.option("--port", type=int, default=8765, show_default=True)
@click.pass_context
def serve_cmd(ctx: click.Context, use_http: bool, host: str, port: int) -> None:
    """Run the MCP server (stdio by default); with --http, the labeling and review pages are served at /ui."""
    from align_mcp.mcp.transport import serve

    db = ctx.ensure_object(dict).get("db")

    def pages(token: str | None) -> Any:
        from align_mcp.web.app import create_app

        return create_app(db, token=token, host=host)

    try:
        serve(db=db, http=use_http, host=host, port=port, ui=pages if use_http else None)
    except AlignError as e:
        from align_mcp.cli.render import error_text

        raise click.ClickException(error_text(e)) from e


if __name__ == "__main__":  # pragma: no cover
    main()
