"""`align-mcp ui`: serve the labeling and review pages on this machine and print their address."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

from align_mcp import config
from align_mcp.errors import AlignError


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it every response waits out the client's delayed ACK (~40 ms),
    # since uvicorn sets no TCP_NODELAY on sockets it is handed.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise click.ClickException(
            f"Cannot listen on {host}:{port} ({e.strerror or e}). Pass another --port, or --port 0 for any free one."
        ) from e
    sock.listen(128)
    return sock


def url_of(host: str, port: int, evaluator: str | None) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"label/{evaluator}" if evaluator else "")


@click.command("ui")
@click.option("--evaluator", help="Open this evaluator's label view (default: the list of queues).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help=f"Bind address (other than loopback needs ${config.ENV_TOKEN}; the page then asks for it).",
)
@click.option("--port", type=int, default=8766, show_default=True, help="Port; 0 picks a free one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.pass_context
def ui_cmd(ctx: click.Context, evaluator: str | None, host: str, port: int, open_browser: bool) -> None:
    """Serve the labeling and review pages: keyboard-first labeling of a queue, and the misaligned cases of an
    alignment run side by side. Prints the address; stop with Ctrl-C."""
    db: Path | None = ctx.ensure_object(dict).get("db")
    token = os.environ.get(config.ENV_TOKEN) or None
    try:
        from align_mcp.web.guard import check_bind

        check_bind(host, token)
        if evaluator is not None:
            from align_mcp.engine.evaluators import get
            from align_mcp.store import open_store

            with open_store(db) as store:
                get(store, evaluator)
    except AlignError as e:
        from align_mcp.cli.render import error_text

        raise click.ClickException(error_text(e)) from e
    import uvicorn

    from align_mcp.web.app import create_app

    sock = _bind(host, port)
    url = url_of(host, sock.getsockname()[1], evaluator)
    auth = f"log in with ${config.ENV_TOKEN}" if token else "no token, this machine only"
    click.echo(f"align-mcp: labeling and review pages at {url} ({auth}); Ctrl-C stops.")
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    app = create_app(db, evaluator=evaluator, token=token, host=host)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
