"""Stopping a study: SIGTERM (kill, batch schedulers, pre-emption) and SIGINT (Ctrl-C) end the
process-pool workers, keep every finished unit and exit with one line that says how to resume;
the workers also exit when the driver is killed outright. Linux only (reads /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# ~10 s to start (dataset, two workers), then ~10 s of units on two cores
ARGS = ["--dataset", "digits", "--methods", "retrain,original,ft", "--seeds", "2",
        "--shadows", "8", "--references", "1", "--epochs", "30", "--executor", "process",
        "--workers", "2"]


def _env() -> dict[str, str]:
    return {**os.environ, "CLASSUNLEARN_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}


def _cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "classunlearn.cli", "bench", *ARGS, "--out", str(out)]


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of each live process whose parent is `pid`."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def _pool_processes(pid: int) -> tuple[dict[int, str], dict[int, str]]:
    """(workers, fork servers) of the driver `pid`: workers are its spawned children, or the
    children of its fork server (bench.executors._worker_context)."""
    workers, servers = {}, {}
    for child, cmd in _children(pid).items():
        if "spawn_main" in cmd:
            workers[child] = cmd
        elif "forkserver" in cmd:
            servers[child] = cmd
            workers.update(_children(child))
    return workers, servers


def _alive(pid: int, cmdline: str) -> bool:
    """Running (not a zombie) and still the same program (pids get reused)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return state != "Z" and now == cmdline


class Bench:
    """`classunlearn bench` in its own session, its stderr lines collected as they come."""

    def __init__(self, out: Path) -> None:
        self.proc = subprocess.Popen(_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_env(), text=True, start_new_session=True)
        self.lines: list[str] = []
        self.first_done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("  done "):
                self.first_done.set()

    def wait_first_unit(self, timeout: float = 90.0) -> dict[int, str]:
        assert self.first_done.wait(timeout), f"no unit finished: {self.lines}"
        workers, servers = _pool_processes(self.proc.pid)
        assert self.proc.poll() is None, "the bench finished before it could be stopped"
        assert len(workers) == 2, (workers, servers)
        return {**workers, **servers}  # all must end with the driver

    def stop(self, sig: int, group: bool = False, timeout: float = 15.0) -> tuple[int, float]:
        started = time.monotonic()
        if group:  # a terminal's Ctrl-C reaches the driver and its workers alike
            os.killpg(self.proc.pid, sig)
        else:  # `kill PID`
            os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"still running {timeout} s after the signal: "
                                 f"{self.lines}") from None
        self.reader.join(5)
        return rc, time.monotonic() - started


def _assert_gone(workers: dict[int, str], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(p, c) for p, c in workers.items()):
        time.sleep(0.2)
    left = {p: c for p, c in workers.items() if _alive(p, c)}
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"orphaned workers (or fork server) still running {within} s later: {left}"


def _stop_and_resume(tmp_path: Path, sig: int, group: bool) -> None:
    out = tmp_path / "bench"
    bench = Bench(out)
    workers = bench.wait_first_unit()
    try:
        rc, took = bench.stop(sig, group=group)
    finally:
        _assert_gone(workers)  # first, so that a failing test leaves no orphans behind
    name = signal.Signals(sig).name
    assert rc == 128 + sig, (rc, bench.lines)
    assert took < 10, took

    # one line beyond the progress log, no traceback or warning from the driver or the workers
    done = [ln for ln in bench.lines if ln.startswith("  done ")]
    other = [ln for ln in bench.lines if not ln.startswith(("study ", "  done "))]
    assert len(other) == 1, bench.lines
    assert other[0].startswith(f"stopped by {name};"), other
    assert str(out) in other[0] and "resume" in other[0], other
    assert done

    artifacts = sorted(p.name for p in (out / "artifacts").glob("*.json"))
    assert len(artifacts) >= len(done)

    rerun = subprocess.run(_cmd(out), capture_output=True, text=True, env=_env(), timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    last = rerun.stdout.strip().splitlines()[-1]  # "N units computed, M reused, ..."
    reused = int(last.split(" reused")[0].rsplit(" ", 1)[1])
    assert reused >= len(artifacts) >= len(done), (last, len(artifacts), len(done))
    assert set(artifacts) <= {p.name for p in (out / "artifacts").glob("*.json")}


def test_sigterm_stops_workers_keeps_units_and_resumes(tmp_path):
    _stop_and_resume(tmp_path, signal.SIGTERM, group=False)


def test_ctrl_c_stops_workers_keeps_units_and_resumes(tmp_path):
    _stop_and_resume(tmp_path, signal.SIGINT, group=True)


def test_workers_exit_when_the_driver_is_killed(tmp_path):
    bench = Bench(tmp_path / "bench")
    workers = bench.wait_first_unit()
    try:
        os.kill(bench.proc.pid, signal.SIGKILL)  # no clean-up in the driver at all
        bench.proc.wait(10)
    finally:
        _assert_gone(workers)


def test_stop_on_signals_raises_once_and_forces_on_a_later_signal():
    script = """if True:
        import os, signal, sys, time
        from classunlearn.bench.executors import Stopped, stop_on_signals
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except Stopped as e:
                print(e.name, e.exit_code, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)  # the same request, repeated at once: ignored
            time.sleep(1.2)
            print("cleaning up", flush=True)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: exit now
            time.sleep(5)
            print("not reached", flush=True)
        """
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert run.returncode == 143, (run.returncode, run.stderr)
    assert run.stdout.split("\n")[:2] == ["SIGTERM 143", "cleaning up"], run.stdout
    assert "not reached" not in run.stdout
    assert run.stderr.strip().startswith("stopped by SIGINT again"), run.stderr
    assert time.monotonic() - started < 30
