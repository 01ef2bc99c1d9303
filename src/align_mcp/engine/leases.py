"""One process judges an alignment run at a time: a lease in the store, kept alive by a heartbeat while it works."""

from __future__ import annotations

import functools
import logging
import os
import socket
import sqlite3
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Concatenate, ParamSpec, TypeVar

from align_mcp.errors import Conflict, NextStep
from align_mcp.store import LeaseRow, Store

log = logging.getLogger(__name__)

LEASE_TTL_S = 120.0
"""How long a lease holds without a heartbeat: a process that died frees its runs this long after."""
HEARTBEAT_S = 20.0
"""How often a working process renews its leases."""

_held: ContextVar[frozenset[int]] = ContextVar("align_mcp_leases", default=frozenset())

P = ParamSpec("P")
T = TypeVar("T")


def holder() -> tuple[int, str]:
    """This process as a lease names it: (process id, host name)."""
    return os.getpid(), socket.gethostname()


def busy_error(alignment_id: int, lease: LeaseRow) -> Conflict:
    """The error for a run whose live lease another process (or another request of this one) holds."""
    until = datetime.fromtimestamp(lease.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Conflict(
        f"Alignment run {alignment_id} is being judged right now by process {lease.pid} on {lease.host!r}; "
        "judging it here too would judge its examples twice. Wait for that process to finish; if it has died, "
        f"its lease lapses at {until} (it is renewed every {HEARTBEAT_S:g}s while it works), and the run can "
        "be resumed then.",
        NextStep("resume_alignment", {"alignment_run": alignment_id}),
    )


@contextmanager
def judging(
    store: Store, alignment_id: int, ttl_s: float = LEASE_TTL_S, every_s: float = HEARTBEAT_S
) -> Iterator[None]:
    """Hold the run's lease while the block runs, renewing it every `every_s` seconds from a helper thread.

    Raises Conflict (naming the holder's process and host) when another holder's lease is live, unless that
    holder was a process on this machine that is gone (a lease of a killed process is taken over at once).
    Re-entrant: a block already holding this run's lease (in this context) does not take it again.
    """
    if alignment_id in _held.get():
        yield
        return
    token = uuid.uuid4().hex
    pid, host = holder()
    held = store.acquire_lease(alignment_id, token, pid, host, ttl_s)
    if held is not None and held.host == host and not _alive(held.pid):
        # Killed on this machine (kill -9, a crash): no need to wait for its lease to lapse.
        if store.take_over_lease(alignment_id, held.token, token, pid, host, ttl_s):
            held = None
        else:
            held = store.acquire_lease(alignment_id, token, pid, host, ttl_s)
    if held is not None:
        raise busy_error(alignment_id, held)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(store, alignment_id, token, ttl_s, every_s, stop),
        name=f"align-mcp-lease-{alignment_id}",
        daemon=True,
    )
    beat.start()
    reset = _held.set(_held.get() | {alignment_id})
    try:
        yield
    finally:
        _held.reset(reset)
        stop.set()
        beat.join()
        store.release_lease(alignment_id, token)


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 checks without signalling)."""
    if sys.platform == "win32":  # there os.kill(pid, 0) would send CTRL_C_EVENT: wait for the lease to lapse
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def holding(
    fn: Callable[Concatenate[Store, int, P], Awaitable[T]],
) -> Callable[Concatenate[Store, int, P], Awaitable[T]]:
    """Run an async function of (store, alignment_id, ...) under that run's lease (see `judging`)."""

    @functools.wraps(fn)
    async def leased(store: Store, alignment_id: int, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with judging(store, alignment_id):
            return await fn(store, alignment_id, *args, **kwargs)

    return leased


def _heartbeat(
    store: Store, alignment_id: int, token: str, ttl_s: float, every_s: float, stop: threading.Event
) -> None:
    while not stop.wait(every_s):
        try:
            if not store.renew_lease(alignment_id, token, ttl_s):
                log.warning("Lost the lease of alignment run %s; another process took it over.", alignment_id)
                return
        except sqlite3.Error as e:  # a busy store: try again at the next beat, before the lease lapses
            log.warning("Could not renew the lease of alignment run %s: %s", alignment_id, e)
