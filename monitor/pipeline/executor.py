"""Executors for chunked, parallel work: a local process pool or a Dask distributed cluster.

Fitting thousands of models, backtests and large scoring batches go through one small contract,
:class:`ChunkExecutor`: ``map_chunks(fn, items, chunk_size)`` cuts ``items`` into chunks of ``chunk_size``
(many series per task, so the per-task overhead of pickling, scheduling and the worker round-trip stays
small next to the work), runs ``fn(chunk)`` on the workers and yields each chunk's result as soon as it is
done. Items are pulled from the iterable lazily and at most ``max_in_flight`` chunks are submitted at a
time, so a caller streaming series in (a generator that fetches their history chunk by chunk) holds only a
bounded number of chunks in memory however many series there are.

Choose one from config with :func:`make_executor` (``executor: {type: local, workers: N}`` is a process
pool, all cores by default; ``executor: {type: dask, address: tcp://scheduler:8786}`` connects to a Dask
scheduler) and close it when done (every executor is a context manager)::

    with make_executor(config.executor) as executor:
        for result in executor.map_chunks(fit_chunk, tasks, chunk_size=50):
            ...

``fn`` must be a module-level function and chunks picklable (both travel to other processes or hosts).
Results arrive in completion order, not submission order; each result should say what it is about.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from monitor.config import ExecutorConfig
from monitor.errors import ConfigError

__all__ = [
    "ChunkExecutor",
    "DaskExecutor",
    "InlineExecutor",
    "LocalExecutor",
    "chunked",
    "collect",
    "make_executor",
]

T = TypeVar("T")
R = TypeVar("R")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), pulled lazily from ``items``."""
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {size}")
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class ChunkExecutor(Protocol):
    """Runs ``fn`` over chunks of items somewhere and streams the results back."""

    #: Parallel workers (for sizing chunks and for the expected speed-up).
    workers: int

    def map_chunks(self, fn: Callable[[list[T]], R], items: Iterable[T], chunk_size: int) -> Iterator[R]:
        """``fn(chunk)`` for consecutive chunks of ``items``, yielded in completion order."""
        ...

    def close(self) -> None:
        """Release the workers (idempotent)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...


class _Closing(ABC):
    """Context-manager plumbing shared by the executors."""

    @abstractmethod
    def close(self) -> None:
        """Release the workers."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class InlineExecutor(_Closing):
    """Runs every chunk in this process, in order (one worker; for tests and tiny jobs)."""

    workers = 1

    def map_chunks(self, fn: Callable[[list[T]], R], items: Iterable[T], chunk_size: int) -> Iterator[R]:
        for chunk in chunked(items, chunk_size):
            yield fn(chunk)

    def close(self) -> None:
        return None


def _bounded(
    submit: Callable[[list[T]], Future[R]], items: Iterable[T], chunk_size: int, max_in_flight: int
) -> Iterator[R]:
    """Submit chunks lazily keeping at most ``max_in_flight`` pending; yield results as they finish."""
    chunks = chunked(items, chunk_size)
    pending: set[Future[R]] = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < max_in_flight:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                else:
                    pending.add(submit(chunk))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()


class LocalExecutor(_Closing):
    """A process pool on this machine.

    Args:
        workers: Processes; ``None`` means every core (``os.cpu_count()``).
        max_in_flight: Chunks submitted but not yet collected; default ``2 * workers`` (keeps every
            worker busy while bounding memory).
    """

    def __init__(self, workers: int | None = None, *, max_in_flight: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.max_in_flight = max_in_flight or 2 * self.workers
        self._pool: ProcessPoolExecutor | None = None

    def map_chunks(self, fn: Callable[[list[T]], R], items: Iterable[T], chunk_size: int) -> Iterator[R]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        pool = self._pool
        return _bounded(lambda chunk: pool.submit(fn, chunk), items, chunk_size, self.max_in_flight)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(_Closing):
    """Chunks run as tasks on a Dask distributed cluster (Kubernetes, YARN, SSH or plain hosts).

    Args:
        address: Scheduler address (``tcp://scheduler:8786``); ignored when ``client`` is given.
        client: An existing ``distributed.Client`` (e.g. on a ``LocalCluster`` in tests); it is not
            closed by :meth:`close`.
        max_in_flight: Chunks submitted but not yet collected; default ``2 *`` the cluster's threads.
        timeout: How long to wait for the scheduler when connecting.

    Raises:
        ConfigError: ``distributed`` is not installed or the scheduler cannot be reached.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        max_in_flight: int | None = None,
        timeout: str = "10s",
    ) -> None:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ConfigError(
                ["executor.type: 'dask' needs the 'distributed' package: pip install 'dask[distributed]'"]
            ) from exc
        self._owns_client = client is None
        if client is None:
            if not address:
                raise ConfigError(["executor.address: type 'dask' needs one (e.g. tcp://scheduler:8786)"])
            try:
                client = Client(address, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    [
                        f"executor.address: cannot reach the Dask scheduler at {address} ({exc}); check "
                        "the address and that the scheduler runs (dask scheduler; dask worker tcp://...)"
                    ]
                ) from exc
        self.client = client
        threads = sum(client.nthreads().values()) or 1
        self.workers = threads
        self.max_in_flight = max_in_flight or 2 * threads

    def map_chunks(self, fn: Callable[[list[T]], R], items: Iterable[T], chunk_size: int) -> Iterator[R]:
        from distributed import as_completed

        chunks = chunked(items, chunk_size)
        # distributed futures are not concurrent.futures ones: stream with its own as_completed.
        first = [self.client.submit(fn, c, pure=False) for c in islice(chunks, self.max_in_flight)]
        if not first:
            return
        queue = as_completed(first)
        try:
            for future in queue:
                result = future.result()
                future.release()
                chunk = next(chunks, None)
                if chunk is not None:
                    queue.add(self.client.submit(fn, chunk, pure=False))
                yield result
        finally:
            for future in list(queue.futures):
                future.cancel()

    def close(self) -> None:
        if self._owns_client and self.client is not None:
            self.client.close()
            self.client = None


def make_executor(config: ExecutorConfig, *, workers: int | None = None) -> ChunkExecutor:
    """The executor the config asks for.

    Args:
        config: ``executor:`` section (``type: local`` with optional ``workers``, or ``type: dask`` with
            ``address``).
        workers: Overrides ``config.workers`` for a local pool (e.g. a CLI ``--workers``); ``1`` runs
            inline in this process.

    Raises:
        ConfigError: Dask is asked for but not installed or not reachable.
    """
    if config.type == "dask":
        return DaskExecutor(config.address)
    count = workers or config.workers or os.cpu_count() or 1
    return InlineExecutor() if count == 1 else LocalExecutor(count)


def collect(results: Iterator[Sequence[R]]) -> list[R]:
    """Flatten chunk results (lists) into one list (for small jobs and tests)."""
    return [item for chunk in results for item in chunk]
