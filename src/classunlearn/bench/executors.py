"""Executors run independent units of work: in this process, in a local process pool, or as
Ray tasks on a cluster. Units are plain functions of JSON-able specs and arrays that return
arrays, so the same unit runs anywhere; only the driver writes to the store."""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from classunlearn.errors import UserError

Task = tuple[Callable[..., Any], tuple]


class Stopped(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM asks the command to stop."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
    """Turn the first of `signums` into `Stopped` in the main thread, so that `finally` blocks
    run (the executors end their workers there, in at most a few seconds). A signal repeated
    within a second is taken as the same request (a scheduler signalling twice); a later one,
    e.g. a second Ctrl-C, exits at once without clean-up (the workers notice their parent is
    gone and exit too). Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[tuple[int, float]] = []

    def handler(signum: int, frame: Any) -> None:
        if not first:
            first.append((signum, time.monotonic()))
            raise Stopped(signum)
        if time.monotonic() - first[0][1] < 1.0:
            return
        os.write(2, f"stopped by {signal.Signals(signum).name} again: exiting without clean-up; "
                    "finished units are kept; rerun the same command to resume\n".encode())
        os._exit(128 + first[0][0])

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():  # None: a handler not set from Python, not restorable
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _init_worker() -> None:
    import torch

    # two 1-thread workers beat one 2-thread process (docs/readings.md section 10)
    torch.set_num_threads(1)
    os.environ.setdefault("CLASSUNLEARN_PROGRESS", "0")


def _init_pool_worker(driver: int) -> None:
    """A pool worker leaves stopping to the driver (Ctrl-C reaches the whole process group;
    the driver ends the workers) and exits when the driver is gone, even by SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a multiprocessing semaphore that a terminated worker cannot
    # release, so the resource tracker would warn about it on the driver's stderr
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    threading.Thread(target=_watch_driver, args=(driver,), daemon=True,
                     name="classunlearn-driver-watch").start()
    # When the pool ends, a worker's exit skips the interpreter's teardown (torch, sklearn,
    # matplotlib: most of a second, which the driver's own exit waits for). By the time
    # atexit runs, multiprocessing has flushed the streams and run its exit functions, and
    # the driver has every result; the exit code is then 0 (the pool never reads it).
    atexit.register(os._exit, 0)
    _init_worker()


def _warm_up() -> None:
    """A pool worker's first task: import what every unit imports."""
    import classunlearn.bench.units  # noqa: F401


def _watch_driver(driver: int, every: float = 0.5) -> None:
    """Exit once the driver has exited. A spawned worker is the driver's child, re-parented
    when it dies. A forked worker is the fork server's child, and the fork server lives as
    long as its workers: it waits on a pidfd of the driver (Linux), or polls its pid."""
    if os.getppid() == driver:
        while os.getppid() == driver:
            time.sleep(every)
        os._exit(1)
    try:
        fd = os.pidfd_open(driver)  # readable once the process has exited
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
        os._exit(1)
    while True:
        try:
            os.kill(driver, 0)
        except OSError:  # gone, or the pid is now another user's process
            os._exit(1)
        time.sleep(every)


@contextlib.contextmanager
def _sigint_ignored():
    """Processes started inside inherit SIGINT ignored from their very start (the initializer
    only runs after `import torch`), so Ctrl-C never prints a worker's traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class LocalExecutor:
    name = "local"

    def start(self) -> None:
        """Nothing to start: tasks run in this process."""

    def run(self, tasks: list[Task]) -> Iterator[tuple[int, Any]]:
        import torch

        # one thread, as in the pool workers, so every executor computes the same numbers
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for i, (fn, args) in enumerate(tasks):
                yield i, fn(*args)
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        pass


def _worker_context():
    """How pool workers start: forked from a fork server that has imported the package,
    torch and ``torch._dynamo`` once (``torch.optim`` imports the last on first use: seconds),
    instead of each worker importing them anew (``spawn``). The server only imports: no
    thread pool or device state exists yet when it forks. Without a fork server (Windows):
    spawn."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["classunlearn.bench.units", "torch._dynamo"])
    return ctx


class ProcessExecutor:
    """A pool of worker processes started once and reused (start-up costs seconds: see
    :func:`_worker_context`).

    `close()` waits for idle workers to exit, but terminates workers still running a task:
    that only happens when the driver stops early (an exception, Ctrl-C, SIGTERM), and a
    stopped study must not leave workers computing. Workers also exit by themselves when
    the driver dies without clean-up (SIGKILL)."""

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.pool: ProcessPoolExecutor | None = None
        self._futures: set[Future] = set()  # submitted and not yet seen done

    def start(self) -> None:
        """Get the workers going now, so that they boot while the driver loads the data: the
        fork server starts its imports (the workers are forked from it at the first `run`,
        at once by then), or, where workers are spawned, the workers start theirs."""
        if self.pool is not None:
            return
        ctx = _worker_context()
        with _sigint_ignored():  # the server or the workers inherit Ctrl-C ignored
            if ctx.get_start_method() == "forkserver":
                import multiprocessing.forkserver

                multiprocessing.forkserver.ensure_running()  # does not wait for its imports
                return
            self._make_pool(ctx)
            for _ in range(self.workers):
                self._futures.add(self.pool.submit(_warm_up))

    def _make_pool(self, ctx) -> None:
        self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                        initializer=_init_pool_worker,
                                        initargs=(os.getpid(),))

    def run(self, tasks: list[Task]) -> Iterator[tuple[int, Any]]:
        self.start()
        if self.pool is None:
            self._make_pool(_worker_context())
        with _sigint_ignored():  # the pool starts its workers in submit()
            futures: dict[Future, int] = {self.pool.submit(fn, *args): i
                                          for i, (fn, args) in enumerate(tasks)}
        self._futures.update(futures)
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    self._futures.discard(f)
                    yield futures[f], f.result()
        finally:
            for f in pending:
                f.cancel()

    def close(self) -> None:
        """End the pool: gracefully when no task is running, else `terminate()`."""
        self._futures = {f for f in self._futures if not f.done()}
        if self._futures:
            self.terminate()
        elif self.pool is not None:
            pool, self.pool = self.pool, None
            # the workers are idle: they get their exit signal now and end by themselves
            # (their interpreters take most of a second to tear down) while the driver goes
            # on; the pool's thread joins them, at the latest when the driver exits
            pool.shutdown(wait=False, cancel_futures=True)

    def terminate(self, grace: float = 2.0) -> None:
        """Stop now: drop queued tasks, SIGTERM the workers, SIGKILL those alive after
        `grace` seconds. Results of finished tasks were already handed out by run()."""
        pool, self.pool = self.pool, None
        self._futures = set()
        if pool is None:
            return
        # shutdown() forgets these; the workers and the manager thread must still be ended
        procs = list((getattr(pool, "_processes", None) or {}).values())
        results = getattr(pool, "_result_queue", None)
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + grace
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(1.0)
        # A worker killed while sending a result leaves half a message in the result pipe,
        # and the pool's manager thread would wait for the rest forever (and the interpreter
        # for it at exit). With every worker dead, closing our end of that pipe turns the wait
        # into EOF, which the manager handles as a broken pool.
        if results is not None:
            with contextlib.suppress(Exception):
                results._writer.close()
        if manager is not None:
            manager.join(5.0)
        if results is not None and (manager is None or not manager.is_alive()):
            with contextlib.suppress(Exception):
                results.close()


class RayExecutor:
    """The same units as Ray tasks; `address` joins an existing cluster ("auto" or host:port),
    None starts a local Ray instance. Every node needs classunlearn and the dataset. Each task
    asks for one CPU and `gpus_per_task` GPUs (e.g. 1, or 0.25 to pack small models)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 gpus_per_task: float = 0.0) -> None:
        self.gpus_per_task = gpus_per_task
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'classunlearn[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
            try:
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                if os.environ.get("CLASSUNLEARN_RAY_TMPDIR"):  # tests keep Ray's files there
                    kwargs["_temp_dir"] = os.environ["CLASSUNLEARN_RAY_TMPDIR"]
                if address:
                    kwargs["address"] = address
                else:
                    kwargs["num_cpus"] = num_cpus or os.cpu_count()
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError(f"cannot reach the Ray cluster at {address!r} ({e}); start it "
                                "with `ray start --head` or fix --address") from None
        self._remote: dict[Callable, Any] = {}

    def start(self) -> None:
        """Nothing to start: the cluster was reached in __init__, its workers are Ray's."""

    def run(self, tasks: list[Task]) -> Iterator[tuple[int, Any]]:
        refs = {}
        for i, (fn, args) in enumerate(tasks):
            if fn not in self._remote:
                self._remote[fn] = self.ray.remote(
                    num_cpus=1, num_gpus=self.gpus_per_task)(_ray_call).options(
                    name=fn.__name__)
            refs[self._remote[fn].remote(fn, *args)] = i
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield refs[done[0]], self.ray.get(done[0])

    def close(self) -> None:
        pass


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not never: ray.init on a closed host:port retries forever."""
    hostport = address.split("://", 1)[-1]
    if hostport == "auto" or ":" not in hostport:
        return  # ray resolves these itself and fails fast
    host, port = hostport.rsplit(":", 1)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address!r} has no valid port; write host:port, "
                        "ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}); "
                        "start it with `ray start --head` or fix --address") from None


def _ray_call(fn: Callable, *args: Any) -> Any:
    _init_worker()
    return fn(*args)


_prestarted: ProcessExecutor | None = None


def prestart(workers: int | None) -> None:
    """Start a process pool of `workers` now, in a driver that has not imported torch yet:
    its workers (or their fork server) import torch and the package while the driver does
    the same, and the next ``make_executor("process", workers)`` takes this pool. The bench
    command calls it first thing (``cli.cmd_bench``), then :func:`discard_prestarted`."""
    global _prestarted
    discard_prestarted()
    if workers is None or workers >= 1:  # else make_executor says what is wrong
        _prestarted = ProcessExecutor(workers)
        _prestarted.start()


def discard_prestarted() -> None:
    """End a pool from :func:`prestart` that no ``make_executor`` took."""
    global _prestarted
    pool, _prestarted = _prestarted, None
    if pool is not None:
        pool.close()


def make_executor(name: str, address: str | None = None, workers: int | None = None,
                  gpus_per_task: float = 0.0):
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}; leave it out for one per core")
    if not 0 <= gpus_per_task < 1e6:
        raise UserError(f"--gpus-per-task must be a number >= 0, got {gpus_per_task}")
    if gpus_per_task and name != "ray":
        raise UserError("--gpus-per-task applies to --executor ray; local and process executors "
                        "use the GPU of this machine directly")
    if name == "local":
        return LocalExecutor()
    if name == "process":
        global _prestarted
        if _prestarted is not None and _prestarted.workers == (workers or _prestarted.workers):
            pool, _prestarted = _prestarted, None
            return pool
        discard_prestarted()
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address, workers, gpus_per_task)
    raise UserError(f"unknown executor '{name}'; choose local, process or ray")
