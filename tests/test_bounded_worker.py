"""A long-lived child process per worker, killed past a call's time limit."""

import os
import time

import pytest

from popray.errors import WorkerStartError
from popray.media import bounded_worker
from popray.media.bounded_worker import BoundedWorker


def _sleep_forever():
    time.sleep(3600)


def _abort():
    os.abort()


def _pid(x):
    if x == "fail":
        raise ValueError("bad\nreally bad")
    return os.getpid()


def test_bounded_worker_reuses_its_child_and_replaces_a_hung_or_dead_one():
    worker = BoundedWorker(_pid, max_calls=3)
    try:
        pids = [worker.call((i,), timeout_s=30) for i in range(3)]
        assert {p[0] for p in pids} == {"ok"} and len({p[1] for p in pids}) == 1  # one child
        assert pids[0][1] != os.getpid()
        assert worker.call(("fail",), 30) == ("error", "ValueError: really bad")
        fresh = worker.call((0,), 30)  # max_calls reached before the failure: replaced
        assert fresh[0] == "ok" and fresh[1] != pids[0][1]
    finally:
        worker.close()
    hung = BoundedWorker(_sleep_forever)
    start = time.perf_counter()
    status, why = hung.call((), timeout_s=1.0)
    assert status == "error" and "longer than 1 s" in why
    assert time.perf_counter() - start < 15
    assert hung.proc is None  # killed
    crash = BoundedWorker(_abort)
    status, why = crash.call((), timeout_s=30)
    assert status == "error" and "died" in why
    assert crash.call((), timeout_s=30)[1].startswith("decoder process died")  # restarted


def test_a_child_that_fails_to_start_is_retried_and_never_kept_unstarted(monkeypatch):
    import multiprocessing as mp

    monkeypatch.setattr(bounded_worker.time, "sleep", lambda s: None)
    process = type(mp.get_context("forkserver").Process())
    start, fails = process.start, {"left": 2}

    def flaky(self):
        if fails["left"]:
            fails["left"] -= 1
            raise OSError("Cannot allocate memory")
        start(self)

    monkeypatch.setattr(process, "start", flaky)
    worker = BoundedWorker(_pid)
    try:
        status, pid = worker.call((0,), 30)  # two failed starts, the third one runs
        assert status == "ok" and pid != os.getpid() and fails["left"] == 0
        worker.close()
        fails["left"] = bounded_worker.START_TRIES
        with pytest.raises(WorkerStartError, match=r"did not start \(3 tries\): Cannot"):
            worker.call((0,), 30)
        assert worker.proc is None  # nothing unstarted left behind
        assert worker.call((1,), 30)[0] == "ok"  # the next call starts a child again
    finally:
        worker.close()
