"""HTTP transport: http.client over a Unix socket, or TCP with optional TLS.

Connections are kept alive (HTTP/1.1) and reused. A :class:`Transport` keeps a
small pool of idle connections behind a lock: each request takes one (or opens
a new one) and owns it alone until its answer has been read to the end, then
puts it back; so a client can be used from several threads at once (which the
async wrapper does). At most :data:`MAX_IDLE` idle connections are kept; extra
ones are closed. A connection goes back to the pool only when its answer was
read completely and the daemon did not answer ``Connection: close``; a stream
closed before its end closes its connection.

An idle connection the daemon has closed in the meantime is noticed before it
is used, or, when the daemon closed it while the request was on its way, by a
failure before any byte of the answer arrived: such a request is sent once more,
on a new connection. A request on a new connection, or one whose answer had
started to arrive, is never sent again. ``Transport.close()`` (``Airlock.close()``
or leaving its ``with`` block) closes the idle connections.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote, urlsplit

from ._version import __version__
from .errors import (
    AirlockConnectionError,
    AirlockError,
    AirlockTimeout,
    ProtocolError,
    error_from_response,
)

Query = Sequence[Tuple[str, str]]

MAX_IDLE = 4
"""How many idle keep-alive connections a :class:`Transport` keeps at most."""

_HINT = (
    "Is `airlock serve` running? Start it with `airlock serve`, or point the client "
    "at the daemon with AIRLOCK_SOCKET, or AIRLOCK_URL and AIRLOCK_TOKEN."
)


def default_socket_path() -> str:
    """Where ``airlock serve`` listens by default.

    ``$AIRLOCK_SOCKET`` if set; else ``/var/lib/airlock/airlock.sock`` when running
    as root; else ``$XDG_STATE_HOME/airlock/airlock.sock`` (an absolute
    ``XDG_STATE_HOME`` only, per the XDG spec), else
    ``~/.local/state/airlock/airlock.sock``.
    """
    env = os.environ.get("AIRLOCK_SOCKET")
    if env:
        return env
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and geteuid() == 0:
        return "/var/lib/airlock/airlock.sock"
    state = os.environ.get("XDG_STATE_HOME", "")
    if not state or not os.path.isabs(state):
        state = str(Path.home() / ".local" / "state")
    return os.path.join(state, "airlock", "airlock.sock")


class _NoAnswer(Exception):
    """The connection failed before a single byte of the answer arrived.

    ``cause`` is the failure (a reset, a broken pipe, or
    :class:`http.client.RemoteDisconnected` for an end of stream).
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Response(http.client.HTTPResponse):
    """An HTTPResponse that tells "nothing arrived" apart from a cut answer."""

    def begin(self) -> None:
        if self.headers is None and self.fp is not None:
            # Wait for the first byte of the status line without consuming it.
            try:
                first = self.fp.peek(1)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise _NoAnswer(exc) from exc
            if not first:
                raise _NoAnswer(
                    http.client.RemoteDisconnected("Remote end closed connection without response")
                )
        super().begin()


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is a Unix stream socket."""

    response_class = _Response

    def __init__(self, path: str, timeout: Optional[float]) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _HTTPConnection(http.client.HTTPConnection):
    response_class = _Response


class _HTTPSConnection(http.client.HTTPSConnection):
    response_class = _Response


def _dropped(sock: Optional[socket.socket]) -> bool:
    """True when an idle connection is unusable: closed, or readable (the daemon
    closed its side, or sent something nobody asked for)."""
    if sock is None:
        return True
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        poll = getattr(select, "poll", None)
        if poll is not None:
            p = poll()
            p.register(sock, select.POLLIN)
            return bool(p.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


@dataclass
class Response:
    status: int
    reason: str
    headers: Message
    body: bytes

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(
                f"the daemon answered {self.status} with a body that is not JSON: {exc}"
            ) from None


def encode_query(query: Optional[Query]) -> str:
    """``?k=v&...`` with keys and values percent-encoded (``/`` and ``=`` kept)."""
    if not query:
        return ""
    parts = [f"{quote(k, safe='')}={quote(v, safe='/=')}" for k, v in query]
    return "?" + "&".join(parts)


class Transport:
    """Sends requests to the daemon and maps failures to :mod:`airlock.errors`."""

    def __init__(
        self,
        *,
        socket_path: Optional[str] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = 60.0,
        ca_file: Optional[str] = None,
        verify: bool = True,
        user_agent: Optional[str] = None,
    ) -> None:
        self.token = token
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: List[http.client.HTTPConnection] = []
        self._pid = os.getpid()
        self.user_agent = user_agent or f"airlock-python/{__version__}"
        self.socket_path: Optional[str] = None
        self.url: Optional[str] = None
        self._host = "localhost"
        self._port: Optional[int] = None
        self._base_path = ""
        self._ssl: Optional[ssl.SSLContext] = None
        if url is not None:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme == "unix":
                socket_path = (parts.netloc + parts.path) or None
                if not socket_path:
                    raise ValueError(f"no socket path in {url!r} (use unix:///path/to/airlock.sock)")
            elif scheme in ("http", "https"):
                if not parts.hostname:
                    raise ValueError(f"no host in the URL {url!r}")
                self.url = url.rstrip("/")
                self._host = parts.hostname
                self._port = parts.port
                self._base_path = parts.path.rstrip("/")
                if scheme == "https":
                    ctx = ssl.create_default_context(cafile=ca_file)
                    if not verify:
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                    self._ssl = ctx
            else:
                raise ValueError(
                    f"unsupported URL scheme in {url!r}: use https://HOST:PORT, "
                    "http://127.0.0.1:PORT (daemon started with --insecure-http) "
                    "or unix:///path/to/airlock.sock"
                )
        if self.url is None:
            self.socket_path = socket_path or default_socket_path()

    # -- description ---------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Where requests go: ``unix:/path/to.sock`` or the base URL."""
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return self.url or ""

    def _where(self) -> str:
        if self.socket_path is not None:
            return f"the Unix socket {self.socket_path}"
        return self.url or ""

    # -- connections ---------------------------------------------------------

    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return _UnixHTTPConnection(self.socket_path, timeout)
        if self._ssl is not None:
            return _HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        return _HTTPConnection(self._host, self._port, timeout=timeout)

    def _checkout(
        self, timeout: Optional[float], fresh: bool = False
    ) -> Tuple[http.client.HTTPConnection, bool]:
        """An idle connection (``True``: reused) or a new one (``False``)."""
        while not fresh:
            with self._lock:
                if self._pid != os.getpid():
                    # A forked child must not share its parent's connections.
                    self._idle, self._pid = [], os.getpid()
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _dropped(conn.sock):
                conn.close()
                continue
            conn.timeout = timeout
            try:
                conn.sock.settimeout(timeout)
            except OSError:
                conn.close()
                continue
            return conn, True
        return self._connection(timeout), False

    def _release(
        self,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        reusable: bool = True,
    ) -> None:
        """Put ``conn`` back in the pool if its answer was read to the end and
        it may be reused; close it otherwise."""
        if reusable and resp.isclosed() and not resp.will_close and conn.sock is not None:
            with self._lock:
                if len(self._idle) < MAX_IDLE and self._pid == os.getpid():
                    self._idle.append(conn)
                    return
        resp.close()
        conn.close()

    def close(self) -> None:
        """Close the idle connections (the transport stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __del__(self) -> None:
        # A client dropped without close(): release its sockets now, quietly.
        try:
            self.close()
        except Exception:
            pass

    def _headers(
        self, accept: str, content_type: Optional[str], extra: Optional[Mapping[str, str]]
    ) -> Dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if extra:
            headers.update(extra)
        return headers

    def _connect_error(
        self, exc: BaseException, timeout: Optional[float] = None
    ) -> AirlockError:
        where = self._where()
        if isinstance(exc, (socket.timeout, TimeoutError)):
            waited = self.timeout if timeout is None else timeout
            within = f" within {waited:g}s" if waited is not None else ""
            return AirlockTimeout(
                f"no answer from the airlock daemon at {where}{within} "
                "(raise `timeout=` if the daemon or the command is slow)",
                endpoint=self.endpoint,
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return AirlockConnectionError(
                f"TLS verification of {where} failed: {exc.verify_message or exc}. "
                "Pass ca_file= with the CA (or the self-signed certificate) of the "
                "daemon's --tls-cert.",
                endpoint=self.endpoint,
            )
        if isinstance(exc, PermissionError) and self.socket_path is not None:
            return AirlockConnectionError(
                f"permission denied on {where}: the socket is mode 0600 and belongs to "
                "the user running `airlock serve`. Run as that user, or reach the daemon "
                "over TCP with AIRLOCK_URL and AIRLOCK_TOKEN.",
                endpoint=self.endpoint,
            )
        if isinstance(exc, FileNotFoundError) and self.socket_path is not None:
            return AirlockConnectionError(
                f"cannot connect to the airlock daemon: {where} does not exist. {_HINT}",
                endpoint=self.endpoint,
            )
        if isinstance(exc, http.client.RemoteDisconnected):
            return AirlockConnectionError(
                f"the airlock daemon at {where} closed the connection without answering. "
                "It may have stopped or restarted; see its log.",
                endpoint=self.endpoint,
            )
        if isinstance(exc, http.client.HTTPException):
            return ProtocolError(f"bad HTTP answer from {where}: {exc!r}")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return AirlockConnectionError(
            f"cannot connect to the airlock daemon at {where}: {reason}. {_HINT}",
            endpoint=self.endpoint,
        )

    # -- requests ------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Query],
        body: Optional[bytes],
        content_type: Optional[str],
        accept: str,
        timeout: Optional[float],
        headers: Optional[Mapping[str, str]],
    ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse, bool]:
        """Send the request; return the connection, the answer (status and
        headers read) and whether the connection may be reused afterwards."""
        target = self._base_path + path + encode_query(query)
        hdrs = self._headers(accept, content_type, headers)
        fresh = False
        while True:
            conn, reused = self._checkout(timeout, fresh)
            try:
                try:
                    conn.request(method, target, body=body, headers=hdrs)
                except (BrokenPipeError, ConnectionResetError) as exc:
                    # The daemon may refuse a large body (413) before reading it and
                    # close its side: its answer can still be waiting to be read.
                    # The request was cut short: the connection is not reused.
                    try:
                        return conn, conn.getresponse(), False
                    except _NoAnswer:
                        raise _NoAnswer(exc) from None
                    except Exception:
                        raise exc from None
                return conn, conn.getresponse(), True
            except _NoAnswer as exc:
                conn.close()
                if reused:
                    # An idle connection the daemon closed while the request was
                    # on its way: send it once more, on a new connection.
                    fresh = True
                    continue
                raise self._connect_error(exc.cause, timeout) from exc.cause
            except AirlockError:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._connect_error(exc, timeout) from exc
            except BaseException:
                conn.close()
                raise

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Query] = None,
        json_body: Any = None,
        body: Optional[bytes] = None,
        content_type: Optional[str] = None,
        accept: str = "application/json",
        timeout: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """Send a request, read the whole answer; raise for an error status."""
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            content_type = "application/json"
        eff_timeout = self.timeout if timeout is None else timeout
        conn, resp, reusable = self._send(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            accept=accept,
            timeout=eff_timeout,
            headers=headers,
        )
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            reusable = False
            raise self._connect_error(exc, eff_timeout) from exc
        except BaseException:
            reusable = False
            raise
        finally:
            self._release(conn, resp, reusable)
        if resp.status >= 400:
            raise error_from_response(resp.status, data, resp.headers, resp.reason)
        return Response(resp.status, resp.reason, resp.headers, data)

    def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        accept: str = "application/x-ndjson",
        timeout: Optional[float] = None,
    ) -> "LineStream":
        """Send a request and return its answer as a stream of lines."""
        body = None
        content_type = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            content_type = "application/json"
        eff_timeout = self.timeout if timeout is None else timeout
        conn, resp, reusable = self._send(
            method,
            path,
            query=None,
            body=body,
            content_type=content_type,
            accept=accept,
            timeout=eff_timeout,
            headers=None,
        )
        if resp.status >= 400:
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                reusable = False
                raise self._connect_error(exc, eff_timeout) from exc
            except BaseException:
                reusable = False
                raise
            finally:
                self._release(conn, resp, reusable)
            raise error_from_response(resp.status, data, resp.headers, resp.reason)
        return LineStream(self, conn, resp, eff_timeout, reusable)


def _end(resp: http.client.HTTPResponse) -> None:
    """After ``read1`` returned nothing: mark the answer as read to its end.

    ``read1`` leaves a ``Content-Length`` answer open when it stops at the
    length; ``read()`` then returns at once and closes it."""
    if not resp.isclosed():
        resp.read()


class LineStream:
    """The lines of a streamed answer, read as they arrive (chunked or not).

    Its connection goes back to the transport's pool once the answer has been
    read to its end; :meth:`close` before that closes the connection.
    """

    def __init__(
        self,
        transport: Transport,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        timeout: Optional[float] = None,
        reusable: bool = True,
    ) -> None:
        self._transport = transport
        self._timeout = timeout
        self._reusable = reusable
        self._conn: Optional[http.client.HTTPConnection] = conn
        self._resp: Optional[http.client.HTTPResponse] = resp
        self.status = resp.status
        self.headers = resp.headers

    def lines(self) -> Iterator[bytes]:
        """Yield each non-empty line (without its newline) as soon as it is complete."""
        buf = bytearray()
        start = 0
        try:
            while True:
                nl = buf.find(b"\n", start)
                if nl >= 0:
                    line = bytes(buf[:nl]).strip()
                    del buf[: nl + 1]
                    start = 0
                    if line:
                        yield line
                    continue
                start = len(buf)
                resp = self._resp
                if resp is None:
                    return
                try:
                    # read1: whatever has arrived (at most the current chunk),
                    # blocking only until at least one byte is there.
                    data = resp.read1(65536)
                    if not data:
                        _end(resp)
                except (OSError, http.client.HTTPException) as exc:
                    raise self._transport._connect_error(exc, self._timeout) from exc
                if not data:
                    tail = bytes(buf).strip()
                    if tail:
                        yield tail
                    return
                buf += data
        finally:
            self.close()

    def finish(self, wait: float = 1.0) -> None:
        """End the stream when the caller expects no more lines: read what is
        left of the answer (its end, normally already on its way), waiting at
        most ``wait`` seconds for each piece, so that the connection can be
        reused. If more data, an error or the wait comes instead, the
        connection is closed."""
        resp, conn = self._resp, self._conn
        if resp is None or conn is None:
            return
        try:
            if conn.sock is not None:
                limit = wait if self._timeout is None else min(wait, self._timeout)
                conn.sock.settimeout(limit)
            while True:
                data = resp.read1(65536)
                if not data:
                    _end(resp)
                    break
                if data.strip():
                    break  # lines nobody will read: close() closes the connection
        except Exception:
            self._reusable = False
        self.close()

    def close(self) -> None:
        """Give the connection back when the answer was read to its end, else
        close it."""
        resp, conn = self._resp, self._conn
        self._resp = self._conn = None
        if resp is None or conn is None:
            if resp is not None:
                resp.close()
            if conn is not None:
                conn.close()
            return
        self._transport._release(conn, resp, self._reusable)

