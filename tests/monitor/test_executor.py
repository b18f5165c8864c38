"""Executors: chunking, streaming with bounded memory, the local pool, Dask on a LocalCluster, config."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import ExecutorConfig
from monitor.errors import ConfigError
from monitor.pipeline.executor import (
    ChunkExecutor,
    DaskExecutor,
    InlineExecutor,
    LocalExecutor,
    chunked,
    collect,
    make_executor,
)
from monitor.pipeline.models import ModelCache
from monitor.pipeline.refit import refit_all
from monitor.source import SqlMetricSource
from monitor.store import SqlStore, make_engine, upgrade
from tests.monitor.test_scoring import NOW, build_warehouse, make_config


def squares(chunk: list[int]) -> list[int]:
    """A module-level task (picklable): the square of each item."""
    return [x * x for x in chunk]


def sizes(chunk: list[int]) -> int:
    return len(chunk)


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (0, 3, []),  # nothing in, nothing out
        (5, 5, [5]),  # exactly one chunk
        (7, 3, [3, 3, 1]),  # the last chunk is shorter
        (2, 10, [2]),  # a chunk larger than the input
    ],
)
def test_chunked_cuts_consecutive_chunks(count: int, size: int, expected: list[int]) -> None:
    chunks = list(chunked(range(count), size))
    assert [len(c) for c in chunks] == expected
    assert [x for c in chunks for x in c] == list(range(count))  # order and items preserved


def test_chunked_rejects_empty_chunks() -> None:
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        list(chunked([1], 0))


def test_inline_executor_runs_in_order() -> None:
    with InlineExecutor() as executor:
        assert collect(executor.map_chunks(squares, range(7), 3)) == [x * x for x in range(7)]


def test_local_pool_streams_an_endless_input_with_bounded_in_flight_chunks() -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for x in itertools.count():
            pulled += 1
            yield x

    with LocalExecutor(2, max_in_flight=3) as executor:
        results = executor.map_chunks(sizes, endless(), 4)
        first = [next(results) for _ in range(5)]
        results.close()  # type: ignore[attr-defined]
    assert first == [4] * 5
    # 5 chunks collected + at most 3 in flight: the input was read lazily, never exhausted
    assert pulled <= (5 + 3) * 4 + 1


def test_local_pool_returns_every_result() -> None:
    with LocalExecutor(2) as executor:
        assert sorted(collect(executor.map_chunks(squares, range(50), 7))) == [x * x for x in range(50)]


@pytest.mark.parametrize(
    ("config", "workers", "kind"),
    [
        (ExecutorConfig(type="local", workers=1), None, InlineExecutor),  # one worker: no pool at all
        (ExecutorConfig(type="local", workers=3), None, LocalExecutor),  # a pool of the configured size
        (ExecutorConfig(type="local", workers=3), 1, InlineExecutor),  # the override wins
    ],
)
def test_make_executor_from_config(config: ExecutorConfig, workers: int | None, kind: type) -> None:
    with make_executor(config, workers=workers) as executor:
        assert isinstance(executor, kind)
        assert executor.workers == (workers or config.workers)


distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")


@pytest.fixture(scope="module")
def dask_client() -> Iterator[object]:
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_executor_streams_chunks_on_a_local_cluster(dask_client: object) -> None:
    executor = DaskExecutor(client=dask_client, max_in_flight=2)
    assert executor.workers == 2
    assert sorted(collect(executor.map_chunks(squares, range(30), 4))) == [x * x for x in range(30)]
    executor.close()  # a client passed in is left open for its owner
    assert collect(DaskExecutor(client=dask_client).map_chunks(squares, [], 4)) == []


def test_refit_on_dask_stores_the_same_models_as_inline(dask_client: object, tmp_path: Path) -> None:
    build_warehouse(tmp_path / "w.db", days=10)  # robust-only stacks: fast fits
    states = []
    executors: list[tuple[str, ChunkExecutor]] = [
        ("inline", InlineExecutor()),
        ("dask", DaskExecutor(client=dask_client)),
    ]
    for name, executor in executors:
        config = make_config(tmp_path / "w.db", tmp_path / f"{name}.db")
        engine = make_engine(config.state.url)
        upgrade(engine)
        source, store = SqlMetricSource(make_engine(config.database.url)), SqlStore(engine)
        summary = refit_all(
            config, store, source, NOW, executor, cache=ModelCache(), chunk_size=2, fetch_size=3
        )
        assert summary.errors == {} and len(summary.fitted) == 10
        stored = store.load_model_state("violations", "MX", "stack")
        assert stored is not None
        states.append(stored.state)
    assert states[0] == states[1]


def test_unreachable_dask_scheduler_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", timeout="0.5s")
