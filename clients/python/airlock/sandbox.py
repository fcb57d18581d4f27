"""A sandbox, its files, and its commands (sync API)."""

from __future__ import annotations

import base64
import codecs
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Generator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)
from urllib.parse import quote

from .errors import AirlockError, ProtocolError
from .models import (
    ExecChunk,
    ExecExit,
    ExecResult,
    FileInfo,
    Limits,
    Remaining,
    Snapshot,
    Usage,
    _obj,
    _opt_float,
    _opt_int,
    _str_dict,
    decode_output,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._http import LineStream, Transport
    from .client import Airlock

__all__ = ["Sandbox", "SandboxFiles", "ExecStream", "Containment"]

#: The daemon's default exec timeout, in seconds (used to size the HTTP read timeout).
DEFAULT_EXEC_TIMEOUT = 300.0

#: A command timeout: seconds, a ``timedelta``, or a duration string (``"30s"``, ``"5m"``).
Seconds = Union[int, float, timedelta, str]
Bytesish = Union[bytes, bytearray, memoryview]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")


def _seconds(value: Optional[Seconds]) -> Optional[float]:
    """Seconds in ``value`` (``None`` for ``None`` or a string that is not a duration)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        return int(m.group(1)) * _UNITS[m.group(2)] if m else None
    return float(value)


def _wire_timeout(value: Seconds) -> Union[int, float, str]:
    """The ``timeout`` as sent: a number of seconds, or the duration string as given."""
    if isinstance(value, str):
        return value
    secs = value.total_seconds() if isinstance(value, timedelta) else value
    return int(secs) if float(secs).is_integer() else secs


def _argv(command: Sequence[str]) -> List[str]:
    if isinstance(command, (str, bytes)):
        raise TypeError(
            "command must be a list of arguments, e.g. ['python3', 'main.py'] "
            "or ['sh', '-c', 'echo hi | tr a-z A-Z'] for a shell line"
        )
    argv = [str(a) for a in command]
    if not argv:
        raise ValueError("command must not be empty")
    return argv


@dataclass
class Sandbox:
    """A sandbox on the daemon, as last read (call :meth:`refresh` to re-read).

    The fields mirror the API's Sandbox object. ``state`` is ``"running"``,
    ``"frozen"`` (contained) or ``"stopped"``; ``stop_reason`` says why it
    stopped (``"deleted"``, ``"ttl"``, ``"idle"``, ``"max_execs"``,
    ``"killed"`` or the reason given to a kill, ``"exited"``,
    ``"daemon_shutdown"``, ``"daemon_restart"``, ``"setup_failed"``, ...).
    """

    id: str
    profile: Optional[str] = None
    state: Optional[str] = None
    stop_reason: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    created_at: Optional[str] = None
    stopped_at: Optional[str] = None
    age_seconds: Optional[float] = None
    ttl_seconds: Optional[float] = None
    expires_at: Optional[str] = None
    idle_timeout_seconds: Optional[float] = None
    max_execs: Optional[int] = None
    execs: int = 0
    running_execs: int = 0
    last_activity_at: Optional[str] = None
    remaining: Remaining = field(default_factory=Remaining)
    limits: Limits = field(default_factory=Limits)
    usage: Usage = field(default_factory=Usage)
    network: Dict[str, Any] = field(default_factory=dict)
    persist: bool = False
    workspace_id: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _client: Optional["Airlock"] = field(default=None, repr=False, compare=False)

    # -- construction --------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any], client: Optional["Airlock"] = None) -> "Sandbox":
        """Build a Sandbox from the API's JSON (bound to ``client`` for its methods)."""
        return cls(
            id=str(data.get("id", "")),
            profile=data.get("profile"),
            state=data.get("state"),
            stop_reason=data.get("stop_reason"),
            labels=_str_dict(data.get("labels")),
            created_at=data.get("created_at"),
            stopped_at=data.get("stopped_at"),
            age_seconds=_opt_float(data.get("age_seconds")),
            ttl_seconds=_opt_float(data.get("ttl_seconds")),
            expires_at=data.get("expires_at"),
            idle_timeout_seconds=_opt_float(data.get("idle_timeout_seconds")),
            max_execs=_opt_int(data.get("max_execs")),
            execs=_opt_int(data.get("execs")) or 0,
            running_execs=_opt_int(data.get("running_execs")) or 0,
            last_activity_at=data.get("last_activity_at"),
            remaining=Remaining.from_json(data.get("remaining")),
            limits=Limits.from_json(data.get("limits")),
            usage=Usage.from_json(data.get("usage")),
            network=_obj(data.get("network")),
            persist=bool(data.get("persist", False)),
            workspace_id=data.get("workspace_id"),
            raw=dict(data),
            _client=client,
        )

    def _update(self, other: "Sandbox") -> "Sandbox":
        for f in fields(self):
            if f.name != "_client":
                setattr(self, f.name, getattr(other, f.name))
        return self

    def _transport(self) -> "Transport":
        if self._client is None:
            raise RuntimeError(
                "this Sandbox is not bound to a client; get it with Airlock.get_sandbox()"
            )
        return self._client._transport

    @property
    def _path(self) -> str:
        return f"/v1/sandboxes/{quote(self.id, safe='')}"

    # -- state ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while ``state`` is ``"running"`` (as of the last read)."""
        return self.state == "running"

    @property
    def files(self) -> "SandboxFiles":
        """Read and write files in the sandbox's ``/workspace``."""
        return SandboxFiles(self)

    def refresh(self) -> "Sandbox":
        """Re-read the sandbox from the daemon (updates ``self``, returns it)."""
        data = self._transport().request("GET", self._path).json()
        return self._update(Sandbox.from_json(data))

    def delete(self) -> "Sandbox":
        """Stop the sandbox (reason ``deleted``); updates ``self`` and returns it."""
        data = self._transport().request("DELETE", self._path).json()
        if isinstance(data, Mapping) and data.get("id"):
            self._update(Sandbox.from_json(data))
        return self

    def contain(self, reason: str) -> "Containment":
        """Freeze the sandbox and record an encrypted snapshot of it.

        Every process is frozen, everything issued to the sandbox is revoked,
        and the sandbox stays ``frozen`` until deleted. Updates ``self``.
        """
        data = self._transport().request(
            "POST", self._path + "/contain", json_body={"reason": reason}
        ).json()
        doc = _obj(data)
        if isinstance(doc.get("sandbox"), Mapping):
            self._update(Sandbox.from_json(doc["sandbox"]))
        snapshot = Snapshot.from_json(_obj(doc.get("snapshot")))
        return Containment(sandbox=self, snapshot=snapshot, raw=doc)

    def kill(self, reason: Optional[str] = None) -> bool:
        """Stop this sandbox through ``POST /v1/kill`` (``{"instance": id}``).

        Returns whether it was stopped by this call. ``self`` is refreshed.
        """
        self._transport()  # raises when detached
        assert self._client is not None
        result = self._client.kill(instance=self.id, reason=reason)
        try:
            self.refresh()
        except AirlockError:
            pass
        return self.id in result.stopped

    # -- commands ------------------------------------------------------------

    def _exec_body(
        self,
        command: Sequence[str],
        stdin: Optional[Union[str, Bytesish]],
        env: Optional[Mapping[str, str]],
        cwd: Optional[str],
        timeout: Optional[Seconds],
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {"command": _argv(command)}
        if stdin is not None:
            if isinstance(stdin, str):
                body["stdin"] = stdin
            elif isinstance(stdin, (bytes, bytearray, memoryview)):
                body["stdin_base64"] = base64.b64encode(bytes(stdin)).decode("ascii")
            else:
                raise TypeError("stdin must be str or bytes")
        if env is not None:
            body["env"] = {str(k): str(v) for k, v in env.items()}
        if cwd is not None:
            body["cwd"] = cwd
        if timeout is not None:
            body["timeout"] = _wire_timeout(timeout)
        return body

    def _http_timeout(self, timeout: Optional[Seconds]) -> Optional[float]:
        base = self._transport().timeout
        if base is None:
            return None
        secs = _seconds(timeout)
        return (secs if secs is not None else DEFAULT_EXEC_TIMEOUT) + base

    def exec(
        self,
        command: Sequence[str],
        stdin: Optional[Union[str, Bytesish]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> ExecResult:
        """Run ``command`` (a list of arguments, no shell) and wait for it.

        :param stdin: text, or bytes (sent base64), fed to the command.
        :param env: extra environment variables.
        :param cwd: working directory (default ``/workspace``).
        :param timeout: seconds, a ``timedelta`` or a duration (``"90s"``,
            ``"5m"``); the daemon's default is 300 s. More than the sandbox's
            remaining TTL is :class:`~airlock.Forbidden`.
        :returns: the :class:`ExecResult`; a non-zero exit is *not* an error
            (call ``.check()`` for that). A missing command gives exit code 127.
        """
        argv = _argv(command)
        data = self._transport().request(
            "POST",
            self._path + "/exec",
            json_body=self._exec_body(argv, stdin, env, cwd, timeout),
            timeout=self._http_timeout(timeout),
        ).json()
        return ExecResult.from_json(_obj(data), command=argv)

    def exec_stream(
        self,
        command: Sequence[str],
        stdin: Optional[Union[str, Bytesish]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> "ExecStream":
        """Run ``command`` and stream its output as it happens.

        Returns an :class:`ExecStream`: iterate it for :class:`ExecChunk` s
        (stdout and stderr, in the order they were produced); once iteration
        ends, ``stream.result`` is the :class:`ExecExit`::

            stream = sb.exec_stream(["pytest", "-q"])
            for chunk in stream:
                print(chunk.data, end="")
            print("exit code", stream.result.exit_code)

        The output is not kept by the SDK (the stream has no size cap). Closing
        the stream before its end (``close()``, or leaving a ``with`` block)
        drops the connection, and the daemon then stops the command.
        """
        argv = _argv(command)
        lines = self._transport().stream(
            "POST",
            self._path + "/exec/stream",
            json_body=self._exec_body(argv, stdin, env, cwd, timeout),
            timeout=self._http_timeout(timeout),
        )
        return ExecStream(lines, argv)


def _record_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes of a stream record's ``data`` (``"encoding": "base64"`` or text)."""
    return decode_output({"data": record.get("data"), "data_encoding": record.get("encoding")}, "data")


class ExecStream:
    """The output of :meth:`Sandbox.exec_stream`, then its exit.

    - Iterate it for :class:`ExecChunk` s as the command produces output.
    - After the loop, :attr:`result` is the :class:`ExecExit` (``exit_code``,
      ``signal``, ``timed_out``, ``duration_ms``, ``ok``, ``check()``).
    - :meth:`wait` skips whatever output is left and returns the exit.

    Once the exit record has been read, the connection goes back to the
    client's pool of keep-alive connections. Closing the stream before that
    (:meth:`close`, or leaving ``with sb.exec_stream(...) as stream:``) closes
    the connection, and the daemon then stops the command.
    """

    def __init__(self, lines: "LineStream", command: List[str]) -> None:
        self._lines = lines
        self.command = command
        self._result: Optional[ExecExit] = None
        self._gen = self._chunks()

    def _chunks(self) -> Generator[ExecChunk, None, None]:
        decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }
        try:
            for line in self._lines.lines():
                try:
                    record = json.loads(line.decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as exc:
                    raise ProtocolError(f"a line of the exec stream is not JSON: {exc}") from None
                if not isinstance(record, dict):
                    raise ProtocolError("a line of the exec stream is not a JSON object")
                kind = record.get("type")
                if kind in decoders:
                    raw = _record_bytes(record)
                    yield ExecChunk(str(kind), decoders[str(kind)].decode(raw), raw)
                elif kind == "exit":
                    self._result = ExecExit.from_json(record, command=self.command)
                    # The exit is the last record: read the end of the answer so
                    # that the connection can be reused.
                    self._lines.finish()
                    for name, dec in decoders.items():
                        rest = dec.decode(b"", final=True)
                        if rest:
                            yield ExecChunk(name, rest, b"")
                    return
                elif kind == "error":
                    detail = record.get("detail") or record.get("message") or json.dumps(record)
                    raise AirlockError(
                        str(detail),
                        title=str(record.get("title") or "exec stream error"),
                        problem=record,
                    )
                # other record types (from a newer daemon) are skipped
            raise ProtocolError(
                "the exec stream ended without an exit record (the daemon may have "
                "stopped, or the sandbox was killed)"
            )
        finally:
            self._lines.close()

    def __iter__(self) -> "ExecStream":
        return self

    def __next__(self) -> ExecChunk:
        return next(self._gen)

    def __enter__(self) -> "ExecStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection; a command still running is stopped by the daemon."""
        self._gen.close()
        self._lines.close()

    @property
    def finished(self) -> bool:
        """True once the exit record has been read."""
        return self._result is not None

    @property
    def result(self) -> ExecExit:
        """How the command ended; available once the stream has been consumed.

        :raises RuntimeError: when read before the end of the stream (iterate
            it first, or call :meth:`wait`).
        """
        if self._result is None:
            raise RuntimeError(
                "the command has not finished: iterate the stream to its end, or call wait()"
            )
        return self._result

    @property
    def exit_code(self) -> Optional[int]:
        """Shorthand for ``result.exit_code``."""
        return self.result.exit_code

    def wait(self) -> ExecExit:
        """Read (and discard) the rest of the output; return the exit."""
        for _ in self:
            pass
        return self.result


@dataclass
class Containment:
    """The answer to :meth:`Sandbox.contain`: the frozen sandbox and its snapshot."""

    sandbox: Sandbox
    snapshot: Snapshot
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def tar_directory(directory: Union[str, "os.PathLike[str]"]) -> bytes:
    """A tar (uncompressed) of the *contents* of ``directory``.

    Owners are reset to 0 / empty names; symlinks are kept as links; special
    files (devices, FIFOs, sockets) are skipped.
    """
    root = Path(directory)

    def normalize(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
        if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(root.iterdir()):
            tar.add(str(entry), arcname=entry.name, recursive=True, filter=normalize)
    return buf.getvalue()


class SandboxFiles:
    """Files in a sandbox's workspace (``sandbox.files``).

    Paths are relative to ``/workspace``. The daemon refuses absolute paths,
    ``..`` components, empty paths and NUL with :class:`~airlock.BadRequest`;
    a path that leaves the workspace through a symlink, or that is not a
    regular file, with :class:`~airlock.Forbidden`. Files are limited to 64 MiB
    and archives to 256 MiB (:class:`~airlock.PayloadTooLarge`).
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def _request(
        self,
        method: str,
        kind: str,
        path: str,
        body: Optional[bytes] = None,
        content_type: Optional[str] = None,
        accept: str = "application/json",
    ) -> Any:
        transport = self._sandbox._transport()
        timeout = transport.timeout
        if timeout is not None:
            timeout = max(timeout, 300.0)  # large transfers
        return transport.request(
            method,
            f"{self._sandbox._path}/{kind}",
            query=[("path", path)],
            body=body,
            content_type=content_type,
            accept=accept,
            timeout=timeout,
        )

    def write(self, path: str, data: Union[str, Bytesish]) -> FileInfo:
        """Create or replace a file (``str`` is written as UTF-8)."""
        if isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        else:
            raise TypeError("data must be str or bytes")
        resp = self._request("PUT", "files", path, body, "application/octet-stream")
        doc = _obj(resp.json())
        return FileInfo.from_json(doc) if doc else FileInfo(path=path, size=len(body))

    def read(self, path: str) -> bytes:
        """The content of a file."""
        return bytes(self._request("GET", "files", path, accept="application/octet-stream").body)

    def read_text(self, path: str, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The content of a file, decoded."""
        return self.read(path).decode(encoding, errors)

    def upload_archive(
        self, path: str, archive: Union[Bytesish, str, "os.PathLike[str]"]
    ) -> FileInfo:
        """Extract a tar archive under the directory ``path`` of the workspace.

        ``archive`` is the tar itself (``bytes``), or a local path: a directory
        is tarred (its contents land directly under ``path``), a file is sent
        as it is (a ``.tar``). Extraction runs inside the sandbox.
        """
        if isinstance(archive, (bytes, bytearray, memoryview)):
            body = bytes(archive)
        else:
            local = Path(archive)
            if local.is_dir():
                body = tar_directory(local)
            elif local.is_file():
                body = local.read_bytes()
            else:
                raise FileNotFoundError(f"no such local file or directory: {local}")
        resp = self._request("PUT", "archive", path, body, "application/x-tar")
        doc = _obj(resp.json())
        return FileInfo.from_json(doc) if doc else FileInfo(path=path)

    def download_archive(self, path: str) -> bytes:
        """A tar of the directory ``path`` of the workspace.

        The archive is made from sandbox content, which is untrusted: extract
        it with ``tarfile``'s ``filter="data"`` (Python 3.12, or 3.9.17+ /
        3.10.12+ / 3.11.4+), never with a plain ``extractall``.
        """
        return bytes(self._request("GET", "archive", path, accept="application/x-tar").body)
