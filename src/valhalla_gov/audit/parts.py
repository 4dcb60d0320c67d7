"""A chain walk split over worker processes.

The log is cut into parts (:meth:`Store.split_log`). This process walks the
first part from the genesis, as a whole walk would; each other part is walked
in a forked worker, which cannot know the chain's state at its start and
takes it from the part's own first line: its stored ``prev`` and ``seq``.
Each line's hash depends only on the line and that stored ``prev``, so a
worker checks every hash and every link inside its part; it reports the
part's first ``prev`` and ``seq`` and its last hash and ``seq``. Joining the
parts in order then checks the links between them: a part counts only if its
first line links to where the part before it ended. A part that is not clean
(a break, a legacy line, an error, a worker that died) or does not link is
walked again here, in this process, from its start to the end of the log,
from the chain state the parts before it reached: the same walk, from the
same state, as one process would have made, so the answer (OK, or the first
bad seq and its message) is the same.

Forking needs a process that runs no other threads (a lock another thread
holds would stay held in the worker), so only the CLI's direct read uses it;
a server walks in one process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..storage.protocol import Store
from .store import AUDIT_LOG

# A part smaller than this is not worth a worker: forking one and opening its
# store costs about what walking this many lines does.
MIN_PART_LINES = 50_000


@dataclass(frozen=True)
class Workers:
    """How many processes walk the log (this one included), and how a
    worker opens its own store (a database connection is not shared across
    a fork)."""

    count: int
    open_store: Callable[[], Store]


@dataclass(frozen=True)
class PartResult:
    """A clean part: every line chained, hashed and linked to the one before."""

    first_prev: str
    first_seq: int
    last_hash: str
    last_seq: int
    events: int
    anchored_hash: str | None


# None: the part held no line at all.
Outcome = PartResult | None


# How a part is walked (audit.service.check_part): passed in, so this module
# needs nothing from the walk's own module, which imports it.
CheckPart = Callable[[Store, str, str | None, int | None], "Outcome | str"]


def _worker(
    send: multiprocessing.connection.Connection,
    check_part: CheckPart,
    open_store: Callable[[], Store],
    after: str,
    until: str | None,
    anchor_seq: int | None,
) -> None:
    result: Outcome | str
    try:
        store = open_store()
        try:
            result = check_part(store, after, until, anchor_seq)
        finally:
            # A database connection is closed, not dropped (the server logs those).
            close = getattr(store, "close", None)
            if callable(close):
                close()
    except BaseException as exc:  # any failure: the parent walks the part again
        result = f"the worker failed: {type(exc).__name__}: {exc}"
    send.send(result)
    send.close()


class Started:
    """Workers walking parts 1..n of the log while this process walks part 0."""

    def __init__(
        self, workers: Workers, cuts: list[str], anchor_seq: int | None, check_part: CheckPart
    ) -> None:
        self.cuts = cuts
        context = multiprocessing.get_context("fork")
        self._procs: list[tuple[Any, multiprocessing.connection.Connection]] = []
        bounds: list[str | None] = [*cuts, None]
        try:
            for after, until in zip(cuts, bounds[1:], strict=True):
                receive, send = context.Pipe(duplex=False)
                proc = context.Process(
                    target=_worker,
                    args=(send, check_part, workers.open_store, after, until, anchor_seq),
                    name="valhalla-verify",
                    daemon=True,
                )
                try:
                    proc.start()
                except OSError:
                    receive.close()
                    raise
                finally:
                    send.close()
                self._procs.append((proc, receive))
        except OSError:
            self.stop()
            raise

    def results(self) -> Iterator[tuple[str, Outcome | str]]:
        """Each part's start and outcome, in log order, as the workers finish."""
        for after, (proc, receive) in zip(self.cuts, self._procs, strict=True):
            try:
                outcome: Outcome | str = receive.recv()
            except (EOFError, OSError):
                outcome = "the worker ended without an answer"
            finally:
                receive.close()
                proc.join()
            yield after, outcome

    def stop(self) -> None:
        """End the workers still running (the answer no longer needs them)."""
        for proc, receive in self._procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
            receive.close()


def start(
    store: Store, workers: Workers | None, anchor_seq: int | None, check_part: CheckPart
) -> Started | None:
    """Fork the workers for a log big enough to pay for them; None otherwise."""
    if workers is None or workers.count < 2:
        return None
    cuts = store.split_log(AUDIT_LOG, workers.count, min_part=MIN_PART_LINES)
    if not cuts:
        return None
    try:
        return Started(workers, cuts, anchor_seq, check_part)
    except OSError:
        return None  # no process to spare (a limit, no memory): one walk
