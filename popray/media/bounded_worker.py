"""A function run in a long-lived child process with a time limit per call
(`BoundedWorker`): many short calls share one child, a call past its limit gets the
child killed, a child that dies is reported, and the next call starts a fresh one.
popray decodes videos this way (popray/media/decode.py): decord can spin for ever inside
native code holding the GIL, or abort the process, on some broken files.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

from popray.errors import WorkerStartError


def _serve(fn, conn) -> None:
    """The child's loop: call `fn` on each tuple of arguments received and send back
    ('ok', result) or ('error', reason), until the parent closes its end."""
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:  # everything goes back to the parent as a reason
            msg = str(exc).strip().splitlines()
            reply = ("error", f"{type(exc).__name__}: {msg[-1] if msg else ''}"[:500])
        conn.send(reply)


START_TRIES = 3


class BoundedWorker:
    """Calls `fn` in a child process that outlives the call, so that many short calls
    (a video each) share one process instead of starting one each; a call that runs past
    its time limit gets the child killed, a child that dies is reported as such, and the
    next call starts a fresh one. A child is also replaced after `max_calls` calls, so a
    leak in native code cannot build up."""

    def __init__(self, fn, max_calls: int = 256, preload: tuple[str, ...] = ()) -> None:
        self.fn, self.max_calls, self.preload = fn, max_calls, preload
        self.proc: Any = None
        self.conn: Any = None
        self.calls = 0

    def _start(self) -> None:
        """Start a child, trying START_TRIES times. Only a started child is kept: a start
        that failed (the fork server not reachable, no memory for a fork) once left an
        unstarted process behind, and the next call failed the whole task on it."""
        ctx = mp.get_context("forkserver")
        # The fork server imports these once (`fn`'s module among them); each child then
        # starts in milliseconds.
        ctx.set_forkserver_preload(list(self.preload))
        for attempt in range(1, START_TRIES + 1):
            conn, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=_serve, args=(self.fn, child), daemon=True)
            try:
                proc.start()
            except OSError as exc:
                conn.close()
                if attempt == START_TRIES:  # the machine's problem, not the file's
                    raise WorkerStartError(
                        f"the decoder process did not start ({START_TRIES} tries): {exc}"
                    ) from exc
                time.sleep(0.5 * attempt)
                continue
            finally:
                child.close()
            self.proc, self.conn, self.calls = proc, conn, 0
            return

    def call(self, args: tuple, timeout_s: float) -> tuple[str, Any]:
        """('ok', fn(*args)) or ('error', why), within `timeout_s` seconds."""
        if self.proc is None or not self.proc.is_alive() or self.calls >= self.max_calls:
            self.close()
            self._start()
        self.calls += 1
        try:
            self.conn.send(args)
            if not self.conn.poll(timeout_s):
                self.close()
                return "error", f"decoding took longer than {timeout_s:g} s (killed)"
            return self.conn.recv()
        except (EOFError, OSError):  # the child died (before or while working)
            self.proc.join(5)
            code = self.proc.exitcode
            self.close()
            return "error", f"decoder process died (exit code {code})"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
        self.proc = self.conn = None
