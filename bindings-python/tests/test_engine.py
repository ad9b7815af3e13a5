"""The Python binding end to end, against the real engine."""

import asyncio
import os
import threading
import time

import pytest

import workz_build
from workz_build import (
    BuildCancelledError,
    BuildResult,
    ConfigError,
    Engine,
    InternalError,
    ValidationError,
    WorkzBuildError,
)

from conftest import small_app

SLOW_APP = {"name": "slow", "appType": "static", "hooks": {"preBuild": ["sleep 60"]}}


def test_version_and_abi():
    assert workz_build.__version__.count(".") == 2
    assert workz_build.ABI_VERSION == 1


def test_build_then_cache_hit_with_events(engine, static_app):
    events = []
    result = engine.build(static_app, on_event=events.append)
    assert isinstance(result, BuildResult) and result.succeeded
    assert not result.cache.hit and result.artifacts is not None
    assert os.path.isfile(os.path.join(result.artifacts.path, "index.html"))
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "finished" and all(e["build_id"] == result.build_id for e in events)
    assert result.to_dict()["build_id"] == result.build_id
    paths = [f.path for f in result.artifacts.files]
    assert "index.html" in paths and [f["path"] for f in result.to_dict()["artifacts"]["files"]] == paths

    again = engine.build(static_app)
    assert again.cache.hit and again.artifacts.reused
    assert engine.explain(static_app)["would_hit"] is True
    assert engine.cache_stats()["tiers"]
    assert engine.cache_invalidate("workz-static-example/*") >= 1  # counted per tier
    assert engine.explain(static_app)["would_hit"] is False
    assert set(engine.cache_prune()) == {"entries_removed", "blobs_removed", "bytes_freed"}


def test_in_memory_sources_take_bytes_and_str(engine):
    result = engine.build({"workz.json": b'{"name": "mem", "appType": "static"}', "index.html": "<p>str</p>",
                           "img/x.bin": bytes(range(256))})
    assert result.succeeded
    with open(os.path.join(result.artifacts.path, "img/x.bin"), "rb") as f:
        assert f.read() == bytes(range(256))


def test_a_failed_build_raises_its_family_with_code_hint_and_result(engine):
    with pytest.raises(ConfigError) as info:
        engine.build({"index.html": "x"})
    err = info.value
    assert isinstance(err, WorkzBuildError)
    assert err.code == "app_config_missing" and err.family == "config" and err.hint
    assert err.result.status == "failed" and err.result.error.code == "app_config_missing"

    with pytest.raises(ValidationError) as info:
        engine.build({"workz.json": '{"name": "bad", "appType": "javascript"}', "main.js": "let = ;"})
    assert info.value.code == "validation_failed" and "main.js:1:" in str(info.value)

    result = engine.build({"index.html": "x"}, check=False)
    assert result.status == "failed" and result.error.family == "config"


def test_bad_input_is_an_error_not_a_crash(engine, tmp_path):
    with pytest.raises(ConfigError) as info:
        Engine({"buildSystem": {"maxConcurrentBuilds": "four"}})
    assert info.value.code == "config_invalid" and "maxConcurrentBuilds" in str(info.value)
    with pytest.raises(ConfigError):
        Engine("{not json")
    with pytest.raises(TypeError):
        engine.build(42)
    with pytest.raises(ConfigError) as info:
        engine.build({"index.html": 42})
    assert info.value.code == "invalid_request"
    with pytest.raises(ValidationError) as info:
        engine.build({"../escape.txt": "x", "workz.json": '{"name": "x", "appType": "static"}'})
    assert info.value.code == "source_path_invalid"
    with pytest.raises(ValidationError) as info:
        engine.build(tmp_path / "missing")
    assert info.value.code == "source_not_found"
    with pytest.raises(ConfigError):
        engine.cache_invalidate("[")


def test_eight_threads_build_at_once_and_events_reach_their_own_callback(engine):
    results, errors, seen = {}, [], {}

    def run(i):
        try:
            events = []
            result = engine.build(small_app(f"thread-{i}", f"<p>{i}</p>"), on_event=events.append)
            results[i], seen[i] = result, events
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 8
    for i, result in results.items():
        assert result.succeeded and result.app["name"] == f"thread-{i}"
        assert seen[i] and all(e["build_id"] == result.build_id for e in seen[i])
        assert seen[i][-1]["type"] == "finished"
    assert len({r.build_id for r in results.values()}) == 8


def test_the_gil_is_released_while_building(engine):
    build = engine.submit(small_app("gil"), app_config=SLOW_APP)
    ticks = 0
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        ticks += 1
    waiter = threading.Thread(target=lambda: build.wait(check=False))
    waiter.start()
    # The waiting thread holds no GIL: this thread keeps running Python.
    start, counted = time.monotonic(), 0
    while time.monotonic() - start < 0.3:
        counted += 1
    assert counted > ticks * 0.2
    build.cancel()
    waiter.join(20)
    assert not waiter.is_alive()


def test_cancel_a_running_build(engine):
    build = engine.submit(small_app("slow"), app_config=SLOW_APP)
    for event in build.events():
        if event["type"] == "process_started":
            build.cancel()
    with pytest.raises(BuildCancelledError) as info:
        build.wait()
    assert info.value.code == "cancelled" and info.value.result.status == "cancelled"


def test_a_raising_callback_cancels_the_build_and_is_raised(engine):
    def explode(event):
        if event["type"] == "process_started":
            raise KeyError("from the callback")

    started = time.monotonic()
    with pytest.raises(KeyError):
        engine.build(small_app("raising"), app_config=SLOW_APP, on_event=explode)
    assert time.monotonic() - started < 30
    assert engine.build(small_app("after")).succeeded


def test_async_builds_in_parallel_with_an_async_event_iterator(engine):
    async def main():
        seen = {i: [] for i in range(8)}
        results = await asyncio.gather(*[
            engine.build_async(small_app(f"async-{i}", f"<p>{i}</p>"), on_event=seen[i].append) for i in range(8)
        ])
        build = engine.submit(small_app("iterated"))
        types = [event["type"] async for event in build.events_async()]
        last = await build.wait_async()
        return results, seen, types, last

    results, seen, types, last = asyncio.run(main())
    for i, result in enumerate(results):
        assert result.succeeded and result.app["name"] == f"async-{i}"
        assert all(e["build_id"] == result.build_id for e in seen[i]) and seen[i][-1]["type"] == "finished"
    assert types[0] == "started" and types[-1] == "finished" and last.succeeded


def test_cancelling_the_awaiting_task_cancels_the_build(engine):
    async def main():
        build = engine.submit(small_app("task"), app_config=SLOW_APP)
        task = asyncio.ensure_future(build.wait_async())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return build.wait(check=False)

    started = time.monotonic()
    assert asyncio.run(main()).status == "cancelled"
    assert time.monotonic() - started < 30


def test_a_panic_inside_the_engine_is_an_internal_error(engine, static_app, panic_at):
    panic_at("explain")
    with pytest.raises(InternalError) as info:
        engine.explain(static_app)
    assert info.value.code == "internal" and "panicked" in str(info.value)
    panic_at("build")
    with pytest.raises(InternalError) as info:
        engine.build(static_app, force=True)
    assert info.value.result.status == "failed"
    os.environ.pop(workz_build._native.PANIC_POINT_VAR)
    assert engine.build(static_app, force=True).succeeded


def test_dropping_the_engine_cancels_its_builds(tmp_path):
    import gc

    engine = Engine({"cache": {"dir": str(tmp_path / "cache")}, "storage": {"artifactsDir": str(tmp_path / "a")}})
    build = engine.submit(small_app("doomed"), app_config=SLOW_APP)
    time.sleep(0.2)
    started = time.monotonic()
    del engine
    gc.collect()
    with pytest.raises(BuildCancelledError):
        build.wait()
    assert time.monotonic() - started < 15
