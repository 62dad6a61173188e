"""Ending a one-off command that ran a flow on the embedded Prefect API, in the right order.

With no PREFECT_API_URL, Prefect starts a temporary API server in a subprocess (`SubprocessASGIServer`) and
registers its `stop` with `atexit`. Its background workers — `APILogWorker` (run logs) and `EventsWorker`
(task-run state and our own events) — register their drain with `threading._register_atexit`, which runs
earlier, at `threading._shutdown`, before the interpreter joins other threads. So at exit the workers are
stopped while threads may still log or emit: each of those records goes to a stopped worker and prints
"RuntimeError: Cannot put items in a stopped service instance" with a traceback; the events worker's own
client may even try to start a second temporary server during teardown.

`embedded_session` ends it while the process is whole, as Prefect's own test harness does: once the flow has
returned, drain the log and event workers (their last batches reach the still-running server), then stop the
temporary server, then let the interpreter exit with nothing left to flush. Logging stays on throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0


@contextmanager
def embedded_session() -> Iterator[None]:
    """Wrap a CLI command's flow call; on the way out, flush Prefect's workers and stop its temporary server."""
    try:
        yield
    finally:
        shut_down()


def shut_down(timeout: float = DRAIN_SECONDS) -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout, at_exit=False)
        except Exception:  # a worker that cannot flush must not hide the command's own result
            logger.debug("draining %s failed", worker.__name__, exc_info=True)
    if PREFECT_API_URL.value():
        return  # a real server (or a test harness's): not ours to stop
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
