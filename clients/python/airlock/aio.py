"""An asyncio variant: :class:`AsyncAirlock`.

A thin wrapper: every call runs the synchronous client in a worker thread
(:func:`asyncio.to_thread`), so it behaves exactly like :class:`~airlock.Airlock`
and raises the same exceptions::

    async with AsyncAirlock() as client:
        async with client.sandbox(profile="untrusted", ttl="5m") as sb:
            await sb.files.write("main.py", code)
            result = await sb.exec(["python3", "main.py"])
            stream = await sb.exec_stream(["pytest", "-q"])
            async for chunk in stream:
                print(chunk.data, end="")
            print(stream.result.exit_code)
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Type, TypeVar, Union

from .client import Airlock, Duration
from .errors import AirlockError, Conflict, NotFound
from .models import (
    ExecChunk,
    ExecExit,
    ExecResult,
    FileInfo,
    Health,
    KillResult,
    NewToken,
    Profile,
    Snapshot,
    TokenInfo,
    WhoAmI,
    Workspace,
)
from .sandbox import Bytesish, Containment, ExecStream, Sandbox, Seconds

__all__ = [
    "AsyncAirlock",
    "AsyncSandbox",
    "AsyncSandboxFiles",
    "AsyncExecStream",
    "AsyncTokens",
    "AsyncSnapshots",
    "AsyncWorkspaces",
]

T = TypeVar("T")


def _next_chunk(stream: ExecStream) -> Optional[ExecChunk]:
    return next(stream, None)


async def _run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(func, *args, **kwargs)


class AsyncExecStream:
    """``async for chunk in stream`` over a command's output; then ``result``."""

    def __init__(self, stream: ExecStream) -> None:
        self._stream = stream

    def __aiter__(self) -> "AsyncExecStream":
        return self

    async def __anext__(self) -> ExecChunk:
        chunk = await _run(_next_chunk, self._stream)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def __aenter__(self) -> "AsyncExecStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Drop the connection; a command still running is stopped by the daemon."""
        await _run(self._stream.close)

    @property
    def finished(self) -> bool:
        return self._stream.finished

    @property
    def result(self) -> ExecExit:
        """How the command ended (after the ``async for``); see :attr:`ExecStream.result`."""
        return self._stream.result

    @property
    def exit_code(self) -> Optional[int]:
        return self._stream.exit_code

    async def wait(self) -> ExecExit:
        """Discard the rest of the output; return the exit."""
        return await _run(self._stream.wait)


class AsyncSandboxFiles:
    """``sandbox.files`` of an :class:`AsyncSandbox` (see :class:`~airlock.SandboxFiles`)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._files = sandbox.files

    async def write(self, path: str, data: Union[str, Bytesish]) -> FileInfo:
        return await _run(self._files.write, path, data)

    async def read(self, path: str) -> bytes:
        return await _run(self._files.read, path)

    async def read_text(self, path: str, encoding: str = "utf-8", errors: str = "strict") -> str:
        return await _run(self._files.read_text, path, encoding, errors)

    async def upload_archive(
        self, path: str, archive: Union[Bytesish, str, "os.PathLike[str]"]
    ) -> FileInfo:
        return await _run(self._files.upload_archive, path, archive)

    async def download_archive(self, path: str) -> bytes:
        return await _run(self._files.download_archive, path)


class AsyncSandbox:
    """A sandbox for async code. Its data is :attr:`info` (a :class:`~airlock.Sandbox`);
    ``id``, ``state``, ``labels``... are read from it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.info = sandbox
        self.files = AsyncSandboxFiles(sandbox)

    def __repr__(self) -> str:
        return f"AsyncSandbox({self.info!r})"

    def __getattr__(self, name: str) -> Any:
        # Data fields (profile, stop_reason, remaining, usage, ...) of the Sandbox.
        if name.startswith("_") or name == "info":
            raise AttributeError(name)
        return getattr(self.info, name)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def state(self) -> Optional[str]:
        return self.info.state

    @property
    def labels(self) -> Dict[str, str]:
        return self.info.labels

    @property
    def running(self) -> bool:
        return self.info.running

    async def refresh(self) -> "AsyncSandbox":
        await _run(self.info.refresh)
        return self

    async def delete(self) -> "AsyncSandbox":
        await _run(self.info.delete)
        return self

    async def contain(self, reason: str) -> Containment:
        return await _run(self.info.contain, reason)

    async def kill(self, reason: Optional[str] = None) -> bool:
        return await _run(self.info.kill, reason)

    async def exec(
        self,
        command: Sequence[str],
        stdin: Optional[Union[str, Bytesish]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> ExecResult:
        return await _run(self.info.exec, command, stdin, env, cwd, timeout)

    async def exec_stream(
        self,
        command: Sequence[str],
        stdin: Optional[Union[str, Bytesish]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> AsyncExecStream:
        """Start a command; ``async for`` over the returned stream, then read ``.result``."""
        stream = await _run(self.info.exec_stream, command, stdin, env, cwd, timeout)
        return AsyncExecStream(stream)


class _SandboxContext:
    def __init__(self, client: "AsyncAirlock", kwargs: Mapping[str, Any]) -> None:
        self._client = client
        self._kwargs = dict(kwargs)
        self._sandbox: Optional[AsyncSandbox] = None

    async def __aenter__(self) -> AsyncSandbox:
        self._sandbox = await self._client.create_sandbox(**self._kwargs)
        return self._sandbox

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        sb = self._sandbox
        if sb is None:
            return
        try:
            await sb.delete()
        except (NotFound, Conflict):
            pass
        except AirlockError:
            if exc is None:
                raise


class AsyncTokens:
    def __init__(self, client: Airlock) -> None:
        self._tokens = client.tokens

    async def create(self, role: str, ttl: Duration, name: Optional[str] = None) -> NewToken:
        return await _run(self._tokens.create, role, ttl, name)

    async def list(self) -> List[TokenInfo]:
        return await _run(self._tokens.list)

    async def revoke(self, token_id: Union[str, TokenInfo, NewToken]) -> None:
        await _run(self._tokens.revoke, token_id)


class AsyncSnapshots:
    def __init__(self, client: Airlock) -> None:
        self._snapshots = client.snapshots

    async def list(self) -> List[Snapshot]:
        return await _run(self._snapshots.list)

    async def get(self, snapshot_id: str) -> Snapshot:
        return await _run(self._snapshots.get, snapshot_id)

    async def download(self, snapshot_id: Union[str, Snapshot]) -> bytes:
        return await _run(self._snapshots.download, snapshot_id)

    async def delete(self, snapshot_id: Union[str, Snapshot]) -> None:
        await _run(self._snapshots.delete, snapshot_id)


class AsyncWorkspaces:
    def __init__(self, client: Airlock) -> None:
        self._workspaces = client.workspaces

    async def list(self) -> List[Workspace]:
        return await _run(self._workspaces.list)

    async def delete(self, workspace_id: Union[str, Workspace]) -> None:
        await _run(self._workspaces.delete, workspace_id)


class AsyncAirlock:
    """The asyncio twin of :class:`~airlock.Airlock` (same arguments, same
    methods, awaited). ``client.sandbox(...)`` is an ``async with`` block."""

    def __init__(
        self,
        socket: Optional[str] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = 60.0,
        *,
        ca_file: Optional[str] = None,
        verify: bool = True,
        user_agent: Optional[str] = None,
    ) -> None:
        self.sync = Airlock(
            socket, url, token, timeout, ca_file=ca_file, verify=verify, user_agent=user_agent
        )
        """The underlying synchronous :class:`~airlock.Airlock`."""
        self.tokens = AsyncTokens(self.sync)
        self.snapshots = AsyncSnapshots(self.sync)
        self.workspaces = AsyncWorkspaces(self.sync)

    @property
    def endpoint(self) -> str:
        return self.sync.endpoint

    def __repr__(self) -> str:
        return f"AsyncAirlock({self.endpoint!r})"

    async def close(self) -> None:
        """Close the idle keep-alive connections (see :meth:`Airlock.close`)."""
        self.sync.close()

    async def __aenter__(self) -> "AsyncAirlock":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def health(self) -> Health:
        return await _run(self.sync.health)

    async def whoami(self) -> WhoAmI:
        return await _run(self.sync.whoami)

    async def audit_head(self) -> Dict[str, Any]:
        return await _run(self.sync.audit_head)

    async def profiles(self) -> List[Profile]:
        return await _run(self.sync.profiles)

    async def set_policy(self, yaml_text: str) -> Any:
        return await _run(self.sync.set_policy, yaml_text)

    async def create_sandbox(
        self,
        profile: Optional[str] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        ttl: Optional[Duration] = None,
        idle_timeout: Optional[Duration] = None,
        max_execs: Optional[int] = None,
        limits: Optional[Mapping[str, Any]] = None,
        env: Optional[Mapping[str, str]] = None,
        persist: Optional[bool] = None,
        workspace: Optional[Union[str, Workspace]] = None,
    ) -> AsyncSandbox:
        sb = await _run(
            self.sync.create_sandbox,
            profile,
            labels=labels,
            ttl=ttl,
            idle_timeout=idle_timeout,
            max_execs=max_execs,
            limits=limits,
            env=env,
            persist=persist,
            workspace=workspace,
        )
        return AsyncSandbox(sb)

    def sandbox(
        self,
        profile: Optional[str] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        ttl: Optional[Duration] = None,
        idle_timeout: Optional[Duration] = None,
        max_execs: Optional[int] = None,
        limits: Optional[Mapping[str, Any]] = None,
        env: Optional[Mapping[str, str]] = None,
        persist: Optional[bool] = None,
        workspace: Optional[Union[str, Workspace]] = None,
    ) -> _SandboxContext:
        """``async with client.sandbox(...) as sb:`` creates, then deletes on exit."""
        return _SandboxContext(
            self,
            dict(
                profile=profile,
                labels=labels,
                ttl=ttl,
                idle_timeout=idle_timeout,
                max_execs=max_execs,
                limits=limits,
                env=env,
                persist=persist,
                workspace=workspace,
            ),
        )

    async def get_sandbox(self, sandbox_id: str) -> AsyncSandbox:
        return AsyncSandbox(await _run(self.sync.get_sandbox, sandbox_id))

    async def list_sandboxes(
        self, state: Optional[str] = None, labels: Optional[Mapping[str, str]] = None
    ) -> List[AsyncSandbox]:
        return [AsyncSandbox(s) for s in await _run(self.sync.list_sandboxes, state, labels)]

    async def kill(
        self,
        *,
        instance: Optional[Union[str, Sandbox, AsyncSandbox]] = None,
        session: Optional[str] = None,
        workflow: Optional[str] = None,
        selector: Optional[Mapping[str, str]] = None,
        all: bool = False,
        reason: Optional[str] = None,
    ) -> KillResult:
        inst: Optional[Union[str, Sandbox]] = (
            instance.info if isinstance(instance, AsyncSandbox) else instance
        )
        return await _run(
            self.sync.kill,
            instance=inst,
            session=session,
            workflow=workflow,
            selector=selector,
            all=all,
            reason=reason,
        )
