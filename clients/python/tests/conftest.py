"""A fake `airlock serve` for the unit tests: threaded http.server on a Unix
socket or on TCP (optionally TLS), answering canned, contract-shaped JSON."""

from __future__ import annotations

import json
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airlock import Airlock  # noqa: E402

SANDBOX: Dict[str, Any] = {
    "id": "sbx-0123456789abcdef",
    "profile": "untrusted",
    "state": "running",
    "stop_reason": None,
    "labels": {"workflow": "triage"},
    "created_at": "2026-11-24T10:00:00Z",
    "stopped_at": None,
    "age_seconds": 12.5,
    "ttl_seconds": 300,
    "expires_at": "2026-11-24T10:05:00Z",
    "idle_timeout_seconds": 120,
    "max_execs": 100,
    "execs": 3,
    "running_execs": 0,
    "last_activity_at": "2026-11-24T10:00:10Z",
    "remaining": {"ttl_seconds": 287.5, "execs": 97, "idle_seconds": 118.0},
    "limits": {"memory_bytes": 268435456, "cpus": 0.5, "pids": 64, "disk_bytes": 134217728},
    "usage": {"cpu_seconds": 0.02, "memory_bytes": 1048576, "memory_peak_bytes": 2097152, "pids": 1},
    "network": {"mode": "none"},
    "persist": False,
    "workspace_id": None,
}


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> Dict[str, Any]:
    doc = {"type": f"https://airlock.dev/problems/{slug}", "title": title, "status": status, "detail": detail}
    doc.update(extra)
    return doc


@dataclass
class Recorded:
    method: str
    target: str  # path + raw query, as received
    path: str
    query: List[Tuple[str, str]]
    headers: Dict[str, str]
    body: bytes
    connection: int = 0  # which connection (1, 2, ... in the order accepted) carried it

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


Handler = Callable[["_Handler", Recorded], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections
    server: Any

    def setup(self) -> None:
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and
        # the client's delayed ACK hold each answer on a reused TCP connection ~40 ms.
        self.disable_nagle_algorithm = self.server.fake.kind == "tcp"
        super().setup()
        self.connection_id = self.server.fake._opened(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._closed(self)

    def log_message(self, format: str, *args: Any) -> None:  # quiet, and Unix-socket safe
        pass

    def _dispatch(self) -> None:
        fake: FakeDaemon = self.server.fake
        parts = urlsplit(self.path)
        key = (self.command, parts.path)
        route = fake.routes.get(key)
        if route is not None and getattr(route, "raw_body", False):
            body = b""  # the route reads (or ignores) the body itself
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        rec = Recorded(
            method=self.command,
            target=self.path,
            path=parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            connection=self.connection_id,
        )
        fake.requests.append(rec)
        if route is None:
            self.reply(404, problem(404, "not-found", "Not Found", f"no route {key}"),
                       content_type="application/problem+json")
            return
        route(self, rec)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    # helpers used by routes
    def reply(self, status: int, payload: Any = None, *, body: Optional[bytes] = None,
              content_type: Optional[str] = None, headers: Optional[Dict[str, str]] = None) -> None:
        if payload is not None:
            body = json.dumps(payload).encode()
            content_type = content_type or ("application/problem+json" if status >= 400 else "application/json")
        body = body or b""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def start_chunked(self, content_type: str = "application/x-ndjson") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _QuietErrors:
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) leaves a broken pipe behind: not news.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]


class _UnixServer(_QuietErrors, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    # A full backlog fails a Unix socket connect at once (EAGAIN): room for the
    # threads of the concurrency tests.
    request_queue_size = 64


class _TCPServer(_QuietErrors, ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class FakeDaemon:
    """Routes are registered per test; every request is recorded."""

    def __init__(self, kind: str, directory: Path, tls: Optional[Tuple[str, str]] = None) -> None:
        self.kind = kind
        self.routes: Dict[Tuple[str, str], Handler] = {}
        self.requests: List[Recorded] = []
        self.connections = 0  # accepted so far
        self._open: Dict[int, _Handler] = {}
        self._lock = threading.Lock()
        self.server: socketserver.BaseServer
        if kind == "unix":
            self.socket_path = str(directory / "airlock.sock")
            self.server = _UnixServer(self.socket_path, _Handler)
        else:
            self.server = _TCPServer(("127.0.0.1", 0), _Handler)
            if tls is not None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(tls[0], tls[1])
                self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            host, port = self.server.server_address[:2]
            self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- connections -----------------------------------------------------------

    def _opened(self, handler: _Handler) -> int:
        with self._lock:
            self.connections += 1
            self._open[self.connections] = handler
            return self.connections

    def _closed(self, handler: _Handler) -> None:
        with self._lock:
            self._open.pop(handler.connection_id, None)

    def open_connections(self) -> List[int]:
        """The ids of the connections the server has not closed yet."""
        with self._lock:
            return sorted(self._open)

    def hang_up_idle(self) -> None:
        """Close every open connection (call it when no request is in flight), as
        a daemon does with keep-alive connections idle for too long."""
        with self._lock:
            handlers = list(self._open.values())
        for h in handlers:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait_closed(self, connection: int, timeout: float = 5.0) -> bool:
        """Wait until the server has seen ``connection`` close."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if connection not in self.open_connections():
                return True
            time.sleep(0.01)
        return False

    # -- registering answers --------------------------------------------------

    def on(self, method: str, path: str, handler: Handler, *, raw_body: bool = False) -> None:
        if raw_body:
            setattr(handler, "raw_body", True)
        self.routes[(method, path)] = handler

    def json(self, method: str, path: str, payload: Any = None, status: int = 200,
             headers: Optional[Dict[str, str]] = None) -> None:
        def handler(h: _Handler, rec: Recorded) -> None:
            if payload is None:
                h.reply(status, headers=headers)
            else:
                h.reply(status, payload, headers=headers)
        self.on(method, path, handler)

    def problem(self, method: str, path: str, status: int, slug: str, title: str, detail: str,
                **extra: Any) -> None:
        self.json(method, path, problem(status, slug, title, detail, **extra), status=status)

    # -- clients ---------------------------------------------------------------

    def client(self, **kwargs: Any) -> Airlock:
        if self.kind == "unix":
            return Airlock(socket=self.socket_path, **kwargs)
        return Airlock(url=self.url, **kwargs)

    def last(self) -> Recorded:
        return self.requests[-1]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="alk-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["unix", "tcp"])
def fake(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[FakeDaemon]:
    """The fake daemon, once on a Unix socket and once on TCP."""
    daemon = FakeDaemon(request.param, short_tmp)
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def unix_fake(short_tmp: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon("unix", short_tmp)
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture(scope="session")
def tls_cert() -> Iterator[Tuple[str, str]]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = Path(tempfile.mkdtemp(prefix="alk-tls-"))
    cert, key = d / "cert.pem", d / "key.pem"
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
    )
    if proc.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"openssl could not make a certificate: {proc.stderr.decode(errors='replace')}")
    try:
        yield str(cert), str(key)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_fake(tls_cert: Tuple[str, str], short_tmp: Path) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon("tcp", short_tmp, tls=tls_cert)
    try:
        yield daemon
    finally:
        daemon.close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Unit tests never see the integration variables of the environment."""
    if not request.module.__name__.endswith("test_integration"):
        for name in ("AIRLOCK_SOCKET", "AIRLOCK_URL", "AIRLOCK_TOKEN", "AIRLOCK_CA_FILE"):
            monkeypatch.delenv(name, raising=False)
