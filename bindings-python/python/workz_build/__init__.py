"""The Workz build engine, in-process.

    from workz_build import Engine
    engine = Engine()                       # the embedded defaults
    result = engine.build("path/to/app", on_event=print)
    print(result.artifacts.path)

Builds run in the engine's own threads with the GIL released; ``build`` blocks the
calling thread, ``await engine.build_async(...)`` does not block the event loop. A build
that does not succeed raises a ``WorkzBuildError`` subclass whose ``result`` is the
``BuildResult``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Mapping, Optional, Union

from . import _native
from ._native import (
    ABI_VERSION,
    BuildCancelledError,
    BuildFailedError,
    BuildTimeoutError,
    ConfigError,
    DependencyError,
    InternalError,
    StorageError,
    ToolchainError,
    ValidationError,
    WorkzBuildError,
    __version__,
)

__all__ = [
    "ABI_VERSION",
    "Artifacts",
    "Build",
    "BuildCancelledError",
    "BuildFailedError",
    "BuildResult",
    "BuildTimeoutError",
    "CacheOutcome",
    "ConfigError",
    "DependencyError",
    "Engine",
    "ErrorInfo",
    "InternalError",
    "StorageError",
    "ToolchainError",
    "ValidationError",
    "WorkzBuildError",
    "__version__",
]

Source = Union[str, "os.PathLike[str]", Mapping[str, Union[bytes, str]]]
Event = Dict[str, Any]
EventCallback = Callable[[Event], Any]


@dataclass(frozen=True)
class CacheOutcome:
    hit: bool
    key: Optional[str] = None
    tier: Optional[str] = None


@dataclass(frozen=True)
class ArtifactFile:
    path: str
    size: int
    blake3: str


class Artifacts:
    """Where a build's outputs were published. ``files`` is built on first use: a cache hit
    should not pay for an object per output file that most callers never read."""

    __slots__ = ("path", "entry_point", "size", "reused", "_native_files", "_raw_files", "_files")

    def __init__(self, d: Dict[str, Any], native_files: Optional[_native.ArtifactFiles] = None) -> None:
        self.path: str = d["path"]
        self.entry_point: Optional[str] = d.get("entry_point")
        self.size: int = d["size"]
        self.reused: bool = d["reused"]
        # The file list stays in the engine until it is read, or arrives decoded in a dict.
        self._native_files = native_files
        self._raw_files: Optional[List[Dict[str, Any]]] = None if native_files is not None else d["files"]
        self._files: Optional[List[ArtifactFile]] = None

    def raw_files(self) -> List[Dict[str, Any]]:
        if self._raw_files is None:
            self._raw_files = json.loads(self._native_files.json()) if self._native_files is not None else []
        return self._raw_files

    @property
    def files(self) -> List[ArtifactFile]:
        if self._files is None:
            self._files = [ArtifactFile(**f) for f in self.raw_files()]
        return self._files

    def __repr__(self) -> str:
        return (f"Artifacts(path={self.path!r}, entry_point={self.entry_point!r}, size={self.size}, "
                f"reused={self.reused})")


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    category: str
    family: str
    message: str
    hint: Optional[str] = None


@dataclass(frozen=True)
class BuildResult:
    """The outcome of one build: the core's ``BuildResult``, field for field."""

    build_id: str
    status: str
    app: Optional[Dict[str, str]]
    target: Optional[str]
    cache: CacheOutcome
    artifacts: Optional[Artifacts]
    timings: Dict[str, float]
    duration: float
    warnings: List[Dict[str, str]]
    error: Optional[ErrorInfo]
    #: The performance monitor's advice: ``{stage, share, issue, solutions}`` per slow stage.
    suggestions: List[Dict[str, Any]] = field(default_factory=list)
    #: On a farm: the worker that ran it, and why there (``{worker, reason, scores}``).
    worker: Optional[str] = None
    placement: Optional[Dict[str, Any]] = None
    _raw: Dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_dict(cls, d: Dict[str, Any], native_files: Optional[_native.ArtifactFiles] = None) -> "BuildResult":
        """A result from the engine's dict; with ``native_files``, the artifact files are read from it."""
        artifacts = d.get("artifacts")
        return cls(
            build_id=d["build_id"],
            status=d["status"],
            app=d.get("app"),
            target=d.get("target"),
            cache=CacheOutcome(**d["cache"]),
            artifacts=None
            if artifacts is None
            else Artifacts(artifacts, native_files),
            timings=dict(d.get("timings") or {}),
            duration=d["duration"],
            warnings=list(d.get("warnings") or []),
            error=None if d.get("error") is None else ErrorInfo(**d["error"]),
            suggestions=list(d.get("suggestions") or []),
            worker=d.get("worker"),
            placement=d.get("placement"),
            _raw=d,
        )

    def to_dict(self) -> Dict[str, Any]:
        """The result as the engine serialises it (the CLI's ``--json`` shape)."""
        d = copy.deepcopy(self._raw)
        if self.artifacts is not None:
            d["artifacts"]["files"] = copy.deepcopy(self.artifacts.raw_files())
        return d


def _config_json(config: Union[None, str, Mapping[str, Any]]) -> str:
    if config is None:
        return ""
    if isinstance(config, str):
        return config
    return json.dumps(config)


def _source(source: Source) -> "tuple[Optional[str], Optional[Dict[str, Union[bytes, str]]]]":
    """The source as the native layer takes it: a directory, or a mapping of files."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), None
    if isinstance(source, Mapping):
        return None, dict(source)
    raise TypeError("source must be a directory path or a mapping of path -> bytes | str")


def _app_config_json(app_config: Optional[Mapping[str, Any]]) -> Optional[str]:
    return None if app_config is None else json.dumps(dict(app_config))


def _finish(
    result_json: str, files: _native.ArtifactFiles, error: Optional[WorkzBuildError], check: bool
) -> BuildResult:
    result = BuildResult.from_dict(json.loads(result_json), files)
    if error is not None and check:
        error.result = result
        raise error
    return result


def _resolve(future: "asyncio.Future[Any]", value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _deliver(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]", value: Any) -> None:
    """Hand a value from the engine's thread to the loop that awaits it."""
    try:
        loop.call_soon_threadsafe(_resolve, future, value)
    except RuntimeError:
        pass  # the loop has closed: nobody awaits this any more


class Build:
    """A submitted build: iterate its events, wait for its result, or cancel it."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def build_id(self) -> str:
        return self._native.build_id

    def cancel(self) -> None:
        """Cancel the build (queued or running); its result then has status ``cancelled``."""
        self._native.cancel()

    def events(self) -> Iterator[Event]:
        """The build's events in order, each as the core's event dict; ends after ``finished``."""
        while True:
            event = self._native.next_event()
            if event is None:
                return
            yield json.loads(event)

    def wait(self, on_event: Optional[EventCallback] = None, check: bool = True) -> BuildResult:
        """Wait for the result, calling ``on_event`` on this thread for each event.

        If ``on_event`` raises, the build is cancelled and, once it has ended, the callback's
        exception is raised. With ``check`` (the default) a build that did not succeed raises
        its ``WorkzBuildError`` subclass; otherwise the result says how it ended.
        """
        if on_event is not None:
            for event in self.events():
                try:
                    on_event(event)
                except BaseException:
                    self.cancel()
                    self._native.wait()
                    raise
        return _finish(*self._native.wait(), check)

    async def events_async(self) -> AsyncIterator[Event]:
        """The build's events as an async iterator (``async for event in build.events_async()``)."""
        loop = asyncio.get_running_loop()
        while True:
            future: "asyncio.Future[Optional[str]]" = loop.create_future()
            self._native.next_event_then(lambda value: _deliver(loop, future, value))
            event = await future
            if event is None:
                return
            yield json.loads(event)

    async def wait_async(self, on_event: Optional[EventCallback] = None, check: bool = True) -> BuildResult:
        """``wait`` for asyncio: the loop runs on; a cancelled task cancels the build."""
        loop = asyncio.get_running_loop()
        try:
            if on_event is not None:
                async for event in self.events_async():
                    try:
                        on_event(event)
                    except BaseException:
                        self.cancel()
                        await self._result_async(loop)
                        raise
            outcome = await self._result_async(loop)
        except asyncio.CancelledError:
            self.cancel()
            raise
        return _finish(*outcome, check)

    def _result_async(self, loop: asyncio.AbstractEventLoop) -> "asyncio.Future[Any]":
        future: "asyncio.Future[Any]" = loop.create_future()
        self._native.wait_then(lambda result, files, error: _deliver(loop, future, (result, files, error)))
        return future


class Engine:
    """The build engine. ``config`` is an engine config (dict or JSON text in the platform's
    format); None gives the embedded defaults. Safe to use from several threads at once."""

    def __init__(self, config: Union[None, str, Mapping[str, Any]] = None) -> None:
        self._native = _native.Engine(_config_json(config))

    def submit(
        self,
        source: Source,
        *,
        target: Optional[str] = None,
        app_config: Optional[Mapping[str, Any]] = None,
        force: bool = False,
        priority: int = 0,
        timeout: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> Build:
        """Queue a build and return its handle at once. On a farm (``queue.redis``), submissions
        with the same ``idempotency_key`` are one build."""
        source_dir, files = _source(source)
        return Build(self._native.submit(source_dir, files, target=target, app_config_json=_app_config_json(app_config),
                                         force=force, priority=priority, timeout=timeout,
                                         idempotency_key=idempotency_key))

    def build(
        self,
        source: Source,
        *,
        target: Optional[str] = None,
        on_event: Optional[EventCallback] = None,
        app_config: Optional[Mapping[str, Any]] = None,
        force: bool = False,
        priority: int = 0,
        timeout: Optional[int] = None,
        check: bool = True,
    ) -> BuildResult:
        """Build and wait (the GIL is released meanwhile). ``source`` is the app's directory
        or a mapping of relative path -> bytes | str."""
        build = self.submit(source, target=target, app_config=app_config, force=force, priority=priority,
                            timeout=timeout)
        return build.wait(on_event=on_event, check=check)

    async def build_async(
        self,
        source: Source,
        *,
        target: Optional[str] = None,
        on_event: Optional[EventCallback] = None,
        app_config: Optional[Mapping[str, Any]] = None,
        force: bool = False,
        priority: int = 0,
        timeout: Optional[int] = None,
        check: bool = True,
    ) -> BuildResult:
        """``build`` as a coroutine; cancelling the awaiting task cancels the build."""
        build = self.submit(source, target=target, app_config=app_config, force=force, priority=priority,
                            timeout=timeout)
        return await build.wait_async(on_event=on_event, check=check)

    def explain(
        self,
        source: Source,
        *,
        target: Optional[str] = None,
        app_config: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Whether the next build would hit the cache, and if not, what changed."""
        source_dir, files = _source(source)
        return json.loads(self._native.explain(source_dir, files, target=target,
                                               app_config_json=_app_config_json(app_config)))

    def cache_stats(self) -> Dict[str, Any]:
        return json.loads(self._native.cache_stats())

    def cache_invalidate(self, pattern: str) -> int:
        """Remove the cache entries matching a glob over ``<app>/<target>/<key>``; how many."""
        return int(self._native.cache_invalidate(pattern))

    def cache_prune(self) -> Dict[str, Any]:
        return json.loads(self._native.cache_prune())
