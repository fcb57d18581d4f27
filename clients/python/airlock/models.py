"""Plain data returned by the API (dataclasses).

Every model keeps the decoded JSON object it was built from in ``raw`` (hidden
from ``repr``), so fields a newer daemon adds are never lost. Timestamps are
ISO 8601 strings as the daemon sends them (``"2026-11-24T10:00:00Z"``).
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from .errors import ExecError

__all__ = [
    "Health",
    "WhoAmI",
    "Profile",
    "ProfileLimits",
    "Limits",
    "Usage",
    "Remaining",
    "Snapshot",
    "SnapshotProcess",
    "SnapshotLink",
    "Workspace",
    "TokenInfo",
    "NewToken",
    "KillResult",
    "FileInfo",
    "ExecExit",
    "ExecResult",
    "ExecChunk",
]


def _obj(value: Any) -> Dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _opt_float(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _opt_int(value: Any) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str_dict(value: Any) -> Dict[str, str]:
    return {str(k): str(v) for k, v in _obj(value).items()}


@dataclass
class Health:
    """``GET /v1/health``."""

    status: str
    version: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Health":
        return cls(status=str(data.get("status", "")), version=data.get("version"), raw=dict(data))


@dataclass
class WhoAmI:
    """``GET /v1/whoami``: the principal (``token:<id>`` or ``local``) and its role."""

    principal: str
    role: str
    expires_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "WhoAmI":
        return cls(
            principal=str(data.get("principal", "")),
            role=str(data.get("role", "")),
            expires_at=data.get("expires_at"),
            raw=dict(data),
        )


@dataclass
class ProfileLimits:
    """A profile's limits: the most a sandbox may ask for (``None``: no limit)."""

    wall_clock_seconds: Optional[float] = None
    memory_bytes: Optional[int] = None
    cpus: Optional[float] = None
    pids: Optional[int] = None
    disk_bytes: Optional[int] = None
    open_files: Optional[int] = None
    file_size_bytes: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "ProfileLimits":
        d = _obj(data)
        return cls(
            wall_clock_seconds=_opt_float(d.get("wall_clock_seconds")),
            memory_bytes=_opt_int(d.get("memory_bytes")),
            cpus=_opt_float(d.get("cpus")),
            pids=_opt_int(d.get("pids")),
            disk_bytes=_opt_int(d.get("disk_bytes")),
            open_files=_opt_int(d.get("open_files")),
            file_size_bytes=_opt_int(d.get("file_size_bytes")),
            raw=d,
        )


@dataclass
class Profile:
    """One entry of ``GET /v1/profiles`` (``extends`` resolved).

    ``network_mode`` is ``"none"`` or ``"proxied"``; ``workspace`` is ``"rw"``,
    ``"ro"`` or ``"none"``.
    """

    name: str
    description: Optional[str] = None
    network_mode: Optional[str] = None
    workspace: Optional[str] = None
    limits: ProfileLimits = field(default_factory=ProfileLimits)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Profile":
        ws = data.get("workspace")
        return cls(
            name=str(data.get("name", "")),
            description=data.get("description"),
            network_mode=data.get("network_mode"),
            workspace=ws if isinstance(ws, str) else None,
            limits=ProfileLimits.from_json(data.get("limits")),
            raw=dict(data),
        )


@dataclass
class Limits:
    """A sandbox's effective resource limits."""

    memory_bytes: Optional[int] = None
    cpus: Optional[float] = None
    pids: Optional[int] = None
    disk_bytes: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "Limits":
        d = _obj(data)
        return cls(
            memory_bytes=_opt_int(d.get("memory_bytes")),
            cpus=_opt_float(d.get("cpus")),
            pids=_opt_int(d.get("pids")),
            disk_bytes=_opt_int(d.get("disk_bytes")),
            raw=d,
        )


@dataclass
class Usage:
    """A sandbox's resource usage when it was read."""

    cpu_seconds: Optional[float] = None
    memory_bytes: Optional[int] = None
    memory_peak_bytes: Optional[int] = None
    pids: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "Usage":
        d = _obj(data)
        return cls(
            cpu_seconds=_opt_float(d.get("cpu_seconds")),
            memory_bytes=_opt_int(d.get("memory_bytes")),
            memory_peak_bytes=_opt_int(d.get("memory_peak_bytes")),
            pids=_opt_int(d.get("pids")),
            raw=d,
        )


@dataclass
class Remaining:
    """What is left of a sandbox's budgets (``None``: no such budget)."""

    ttl_seconds: Optional[float] = None
    execs: Optional[int] = None
    idle_seconds: Optional[float] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "Remaining":
        d = _obj(data)
        return cls(
            ttl_seconds=_opt_float(d.get("ttl_seconds")),
            execs=_opt_int(d.get("execs")),
            idle_seconds=_opt_float(d.get("idle_seconds")),
            raw=d,
        )


@dataclass
class SnapshotProcess:
    """A process recorded when a sandbox was contained.

    ``pid`` is the PID inside the sandbox's namespace (0 if the daemon could not
    read it), ``host_pid`` the PID on the daemon's host.
    """

    pid: int
    command: List[str] = field(default_factory=list)
    state: Optional[str] = None
    host_pid: Optional[int] = None

    @classmethod
    def from_json(cls, data: Any) -> "SnapshotProcess":
        d = _obj(data)
        cmd = d.get("command")
        return cls(
            pid=_opt_int(d.get("pid")) or 0,
            command=[str(c) for c in cmd] if isinstance(cmd, list) else [],
            state=d.get("state"),
            host_pid=_opt_int(d.get("host_pid")),
        )


@dataclass
class SnapshotLink:
    """An airlock link (egress gateway, ...) the sandbox had when contained."""

    kind: str
    socket: Optional[str] = None
    port: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> "SnapshotLink":
        d = _obj(data)
        return cls(
            kind=str(d.get("kind", "")),
            socket=d.get("socket"),
            port=_opt_int(d.get("port")),
            raw=d,
        )


@dataclass
class Snapshot:
    """An encrypted record of a contained sandbox (outlives the sandbox).

    ``processes`` is filled only in the answer of ``contain()``; the daemon keeps
    the process list sealed with the workspace, so ``GET /v1/snapshots[/{id}]``
    gives ``process_count`` only (the list is ``airlock-snapshot.json`` in the
    snapshot's archive).
    """

    id: str
    sandbox: Optional[str] = None
    created_at: Optional[str] = None
    reason: Optional[str] = None
    size_bytes: Optional[int] = None
    processes: List[SnapshotProcess] = field(default_factory=list)
    links: List[SnapshotLink] = field(default_factory=list)
    revoked: List[str] = field(default_factory=list)
    process_count: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Snapshot":
        procs = data.get("processes")
        links = data.get("links")
        revoked = data.get("revoked")
        return cls(
            id=str(data.get("id", "")),
            sandbox=data.get("sandbox"),
            created_at=data.get("created_at"),
            reason=data.get("reason"),
            size_bytes=_opt_int(data.get("size_bytes")),
            processes=[SnapshotProcess.from_json(p) for p in procs] if isinstance(procs, list) else [],
            links=[SnapshotLink.from_json(x) for x in links] if isinstance(links, list) else [],
            revoked=[str(r) for r in revoked] if isinstance(revoked, list) else [],
            process_count=(
                _opt_int(data.get("process_count"))
                if data.get("process_count") is not None
                else (len(procs) if isinstance(procs, list) else None)
            ),
            raw=dict(data),
        )


@dataclass
class Workspace:
    """A persisted (sealed) workspace that can seed a new sandbox."""

    id: str
    sandbox: Optional[str] = None
    created_at: Optional[str] = None
    size_bytes: Optional[int] = None
    labels: Dict[str, str] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Workspace":
        return cls(
            id=str(data.get("id", "")),
            sandbox=data.get("sandbox"),
            created_at=data.get("created_at"),
            size_bytes=_opt_int(data.get("size_bytes")),
            labels=_str_dict(data.get("labels")),
            raw=dict(data),
        )


@dataclass
class TokenInfo:
    """A token as listed by ``GET /v1/tokens`` (the secret is never listed)."""

    id: str
    role: str
    name: Optional[str] = None
    created_at: Optional[str] = None
    expires_at: Optional[str] = None
    revoked_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TokenInfo":
        return cls(
            id=str(data.get("id", "")),
            role=str(data.get("role", "")),
            name=data.get("name"),
            created_at=data.get("created_at"),
            expires_at=data.get("expires_at"),
            revoked_at=data.get("revoked_at"),
            raw=dict(data),
        )


@dataclass
class NewToken:
    """A freshly created token. ``token`` is the secret; it is shown only once."""

    id: str
    token: str = field(repr=False)
    role: str = ""
    name: Optional[str] = None
    created_at: Optional[str] = None
    expires_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "NewToken":
        return cls(
            id=str(data.get("id", "")),
            token=str(data.get("token", "")),
            role=str(data.get("role", "")),
            name=data.get("name"),
            created_at=data.get("created_at"),
            expires_at=data.get("expires_at"),
            raw=dict(data),
        )


@dataclass
class KillResult:
    """``POST /v1/kill``: the ids of the sandboxes that were stopped."""

    stopped: List[str] = field(default_factory=list)
    count: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "KillResult":
        stopped = data.get("stopped")
        ids = [str(s) for s in stopped] if isinstance(stopped, list) else []
        count = _opt_int(data.get("count"))
        return cls(stopped=ids, count=len(ids) if count is None else count, raw=dict(data))


@dataclass
class FileInfo:
    """A file or archive written into a sandbox's workspace."""

    path: str
    size: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FileInfo":
        return cls(path=str(data.get("path", "")), size=_opt_int(data.get("size")), raw=dict(data))


@dataclass
class ExecExit:
    """How a command ended.

    This is what :attr:`ExecStream.result` holds once a stream is over, and the
    base of :class:`ExecResult` (which adds the output).
    """

    exit_code: Optional[int]
    signal: Optional[Union[int, str]] = None
    timed_out: bool = False
    duration_ms: Optional[float] = None
    command: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0 (no signal, no timeout)."""
        return self.exit_code == 0 and self.signal is None and not self.timed_out

    def check(self) -> "ExecExit":
        """Return ``self`` if :attr:`ok`, else raise :class:`~airlock.ExecError`."""
        if not self.ok:
            raise ExecError(self)
        return self

    def describe_failure(self) -> str:
        """A one-line account of why the command is not :attr:`ok`."""
        cmd = " ".join(shlex.quote(c) for c in self.command) or "the command"
        if self.timed_out:
            text = f"`{cmd}` timed out"
            if self.duration_ms is not None:
                text += f" after {self.duration_ms / 1000:.1f}s"
        elif self.signal is not None:
            text = f"`{cmd}` was killed by signal {self.signal}"
        elif self.exit_code == 127:
            text = f"`{cmd}` exited with status 127 (command not found)"
        elif self.exit_code == 126:
            text = f"`{cmd}` exited with status 126 (cannot execute)"
        else:
            text = f"`{cmd}` exited with status {self.exit_code}"
        return text

    @staticmethod
    def _fields(data: Mapping[str, Any]) -> Dict[str, Any]:
        sig = data.get("signal")
        return {
            "exit_code": _opt_int(data.get("exit_code")),
            "signal": sig if isinstance(sig, (int, str)) and not isinstance(sig, bool) else None,
            "timed_out": bool(data.get("timed_out", False)),
            "duration_ms": _opt_float(data.get("duration_ms")),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], command: Optional[List[str]] = None) -> "ExecExit":
        return cls(**cls._fields(data), command=list(command or []), raw=dict(data))


def decode_output(data: Mapping[str, Any], name: str) -> bytes:
    """The bytes of ``data[name]``, base64-decoded when ``data[name + '_encoding']`` says so."""
    value = data.get(name)
    if value is None:
        return b""
    encoding = data.get(f"{name}_encoding")
    if encoding == "base64":
        return base64.b64decode(str(value))
    return str(value).encode("utf-8", errors="surrogatepass")


@dataclass
class ExecResult(ExecExit):
    """The result of :meth:`Sandbox.exec`: how the command ended, and its output.

    ``stdout`` and ``stderr`` are text (UTF-8, undecodable bytes replaced by
    U+FFFD); ``stdout_bytes`` and ``stderr_bytes`` are the exact bytes. Output
    kept by the daemon is capped at 16 MiB per stream (``*_truncated``).
    """

    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", errors="replace")

    def check(self) -> "ExecResult":
        """Return ``self`` if :attr:`ok`, else raise :class:`~airlock.ExecError`."""
        if not self.ok:
            raise ExecError(self)
        return self

    def describe_failure(self) -> str:
        text = super().describe_failure()
        tail = self.stderr.strip() or self.stdout.strip()
        if tail:
            if len(tail) > 800:
                tail = "…" + tail[-800:]
            text += f"; {'stderr' if self.stderr.strip() else 'stdout'}:\n{tail}"
        return text

    @classmethod
    def from_json(cls, data: Mapping[str, Any], command: Optional[List[str]] = None) -> "ExecResult":
        return cls(
            **cls._fields(data),
            command=list(command or []),
            raw=dict(data),
            stdout_bytes=decode_output(data, "stdout"),
            stderr_bytes=decode_output(data, "stderr"),
            stdout_truncated=bool(data.get("stdout_truncated", False)),
            stderr_truncated=bool(data.get("stderr_truncated", False)),
        )


@dataclass(frozen=True)
class ExecChunk:
    """A piece of output from :meth:`Sandbox.exec_stream`.

    ``stream`` is ``"stdout"`` or ``"stderr"``; ``raw`` the exact bytes;
    ``data`` their text. Text is decoded incrementally per stream, so a UTF-8
    character split across chunks appears whole in the later chunk: joining
    every ``raw`` gives the exact output, joining every ``data`` its text.
    """

    stream: str
    data: str
    raw: bytes
