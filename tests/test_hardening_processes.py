"""The native core across process boundaries: interpreter exit with replays in flight,
fork() during and after multi-threaded replays, and sub-interpreters.

Each case runs in a fresh interpreter (a crash, an abort or a hang there fails the test
instead of taking the suite down), in a new session so that a hung grandchild is killed
with it.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from _support import needs_native

pytestmark = needs_native
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")

SANITIZED = bool(os.environ.get("ARENAGRAD_SANITIZED"))


def run_python(code, timeout=60, env=None):
    """Runs `code` in a fresh interpreter; returns (returncode, stdout, stderr), or fails the
    test if it does not finish within `timeout` seconds (killing its whole session)."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=dict(os.environ, **(env or {})),
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"hung for {timeout} s; stdout: {out[-2000:]!r}; stderr: {err[-2000:]!r}")
    return process.returncode, out, err


# A compiled function whose replay runs on 2 threads (enough node-lanes per replay).
COMPILED = """
    import numpy as np
    import arenagrad
    from arenagrad import Value

    arenagrad.set_num_threads(2)
    w = [Value(0.5), Value(-0.25)]

    def fn(a, b):
        h = a
        for _ in range(30):
            h = (w[0] * h + w[1] * b).tanh()
        return h

    f = arenagrad.compile(fn, n_inputs=2)
    X = np.random.default_rng(0).normal(size=(8192, 2))
"""


# ---- interpreter exit ------------------------------------------------------------------------


def test_exit_while_daemon_threads_replay():
    # Daemon threads replay in a loop, with the GIL released most of the time, while the
    # main thread returns: the interpreter finalizes under them. A thread that then asks for
    # the GIL back was ended by an unwind through a noexcept destructor: "terminate called
    # without an active exception" (SIGABRT), in most runs with four threads.
    code = COMPILED + """
    import threading, time
    fs = [arenagrad.compile(fn, n_inputs=2) for _ in range(4)]

    def loop(g):
        while True:
            g.forward(X[:2048])
            g.backward()

    for g in fs:
        threading.Thread(target=loop, args=(g,), daemon=True).start()
    time.sleep(0.05)
    print("exiting")
    """
    runs = 3 if SANITIZED else 6
    for _ in range(runs):
        code_, out, err = run_python(code, timeout=60)
        assert code_ == 0 and out == "exiting\n", (code_, err[-2000:])
        assert "terminate" not in err


def test_exit_hook_lets_a_replay_started_late_finish():
    # After the exit hook has run, replays keep the GIL: an atexit handler registered before
    # arenagrad (so it runs after arenagrad's) can still replay, from any thread.
    code = """
    import atexit, threading
    results = []

    def late():
        import numpy as np
        results.append(float(f.forward(np.ones((4, 2)))[0]))
        t = threading.Thread(target=lambda: results.append(float(f.forward(np.ones((4, 2)))[1])))
        t.start(); t.join()
        print(results)

    atexit.register(late)
    """ + COMPILED
    code_, out, err = run_python(code, timeout=60)
    assert code_ == 0, err[-2000:]
    first, second = eval(out)
    assert first == second and -1.0 < first < 1.0


# ---- fork --------------------------------------------------------------------------------------


@needs_fork
def test_fork_after_a_multithreaded_replay():
    # libgomp's thread pool does not survive fork(): the child's first multi-threaded replay
    # waited forever for threads it did not have.
    code = COMPILED + """
    import os
    Y = f.forward(X)
    threads = arenagrad.get_num_threads()  # 2, or 1 in a build without OpenMP
    pid = os.fork()
    if pid == 0:
        Z = f.forward(X)
        f.backward()
        os._exit(0 if np.array_equal(Y, Z) and arenagrad.get_num_threads() == threads else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert np.array_equal(f.forward(X), Y)  # and the parent goes on
    print("ok")
    """
    code_, out, err = run_python(code, timeout=60)
    assert (code_, out) == (0, "ok\n"), err[-2000:]


@needs_fork
def test_multiprocessing_fork_workers_replay():
    code = (
        COMPILED
        + """
    import multiprocessing

    def work(seed):
        rows = np.random.default_rng(seed).normal(size=(4096, 2))
        return f.forward(rows).sum()

    if __name__ == "__main__":
        expected = [work(seed) for seed in range(4)]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(work, range(4)) == expected
        print("ok")
    """
    )
    code_, out, err = run_python(code, timeout=120)
    assert (code_, out) == (0, "ok\n"), err[-2000:]


@needs_fork
def test_fork_while_another_thread_replays():
    # A child forked while another thread is inside a replay: that thread does not exist in
    # the child, so its "already running" flag must not hold there, and the OpenMP team it
    # was driving may have been half-way: the child replays on one thread.
    code = COMPILED + """
    import os, threading
    Y = f.forward(X)
    big = np.random.default_rng(1).normal(size=(300_000, 2))
    busy = threading.Event()

    def replay_big():
        busy.set()
        f.forward(big)

    forked_during = False
    for attempt in range(20):
        t = threading.Thread(target=replay_big)
        busy.clear()
        t.start()
        busy.wait()
        try:  # is the other thread inside the replay now?
            f.forward(X[:1])
            inside = False
        except RuntimeError as error:
            assert "already running" in str(error)
            inside = True
        if inside:
            pid = os.fork()
            if pid == 0:
                try:
                    ok = np.array_equal(f.forward(X), Y) and arenagrad.get_num_threads() == 1
                except RuntimeError:
                    ok = False
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
            forked_during = True
        t.join()
        if forked_during:
            break
    assert forked_during
    assert np.array_equal(f.forward(X), Y)
    print("ok")
    """
    code_, out, err = run_python(code, timeout=120)
    assert (code_, out) == (0, "ok\n"), err[-2000:]


# ---- sub-interpreters --------------------------------------------------------------------------


def _subinterpreters():
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            return __import__(name).__name__
        except ImportError:
            continue
    return None


@pytest.mark.skipif(_subinterpreters() is None, reason="this Python has no sub-interpreter module")
@pytest.mark.parametrize("imported_in_main", [False, True])
def test_sub_interpreter_import_is_refused(imported_in_main):
    # pybind11 takes the GIL through PyGILState, which knows only the main interpreter's
    # thread states: importing in a sub-interpreter deadlocked.
    module = _subinterpreters()
    code = f"""
    import {module} as interpreters
    if {imported_in_main}:
        import arenagrad
    interp = interpreters.create()
    source = "import arenagrad"
    if hasattr(interpreters, "run_string"):
        try:
            error = interpreters.run_string(interp, source)
        except Exception as raised:
            error = raised
    else:
        error = interpreters.exec(interp, source)
    print(error)
    """
    code_, out, err = run_python(code, timeout=60)
    assert code_ == 0, err[-2000:]
    assert "ImportError" in out and "cannot be imported in a sub-interpreter" in out, out
