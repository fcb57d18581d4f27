"""Keep-alive: the transport reuses its connections, retries a stale one once,
and never reuses a connection whose answer was not read to its end."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, List

import pytest

import airlock._http as http_mod
from airlock import AirlockConnectionError, AirlockTimeout, ProtocolError

from conftest import SANDBOX, FakeDaemon, Recorded

SBX = "/v1/sandboxes/sbx-0123456789abcdef"
EXIT0 = {"type": "exit", "exit_code": 0, "signal": None, "timed_out": False, "duration_ms": 1}


def line(obj: Dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def sent(fake: FakeDaemon, method: str, path: str) -> List[Recorded]:
    return [r for r in fake.requests if r.method == method and r.path == path]


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def test_sequential_requests_share_one_connection(fake: FakeDaemon) -> None:
    fake.json("GET", "/v1/health", {"status": "ok"})
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    fake.problem("GET", SBX, 404, "not-found", "Not Found", "no such sandbox")
    client = fake.client()
    for _ in range(5):
        assert client.health().status == "ok"
    client.create_sandbox(profile="untrusted")
    with pytest.raises(Exception):
        client.get_sandbox("sbx-0123456789abcdef")  # an error answer is read whole: reusable
    assert client.health().status == "ok"
    assert fake.connections == 1
    assert {r.connection for r in fake.requests} == {1}
    assert all("connection" not in r.headers for r in fake.requests)  # no "Connection: close"
    assert len(client._transport._idle) == 1


def test_https_reuses_its_connection(tls_fake: FakeDaemon) -> None:
    tls_fake.json("GET", "/v1/health", {"status": "ok"})
    client = tls_fake.client(token="t", verify=False)
    for _ in range(3):
        assert client.health().status == "ok"
    assert tls_fake.connections == 1


def test_threads_share_a_small_pool(fake: FakeDaemon) -> None:
    def slowish(h: Any, rec: Recorded) -> None:
        time.sleep(0.005)
        h.reply(200, {"status": "ok"})

    fake.on("GET", "/v1/health", slowish)
    client = fake.client()
    errors: List[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                assert client.health().status == "ok"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(fake.requests) == 80
    assert fake.connections < 80  # connections were reused
    idle = client._transport._idle
    assert 1 <= len(idle) <= http_mod.MAX_IDLE
    # the connections beyond the pool's cap were closed, not leaked
    assert wait_for(lambda: len(fake.open_connections()) == len(idle))


def test_an_answer_with_connection_close_is_not_reused(fake: FakeDaemon) -> None:
    def closing(h: Any, rec: Recorded) -> None:
        h.reply(200, {"status": "ok"}, headers={"Connection": "close"})
        h.close_connection = True

    fake.on("GET", "/v1/health", closing)
    client = fake.client()
    client.health()
    client.health()
    assert [r.connection for r in fake.requests] == [1, 2]
    assert client._transport._idle == []


def test_an_idle_connection_the_daemon_closed_is_not_used(fake: FakeDaemon) -> None:
    fake.json("GET", "/v1/health", {"status": "ok"})
    client = fake.client()
    client.health()
    fake.hang_up_idle()
    assert fake.wait_closed(1)
    assert client.health().status == "ok"
    assert [r.connection for r in fake.requests] == [1, 2]


def test_a_stale_connection_is_retried_once_on_a_new_one(
    fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon closes an idle connection while the request is on its way
    (the check before reuse sees nothing): the request fails before any byte of
    the answer arrived, and is sent again, once, on a new connection."""
    monkeypatch.setattr(http_mod, "_dropped", lambda sock: False)
    fake.json("GET", "/v1/health", {"status": "ok"})
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    client = fake.client()
    client.health()
    fake.hang_up_idle()
    assert fake.wait_closed(1)
    sb = client.create_sandbox(profile="untrusted")
    assert sb.id == SANDBOX["id"]
    creates = sent(fake, "POST", "/v1/sandboxes")
    assert len(creates) == 1 and creates[0].connection == 2  # sent exactly once
    assert fake.connections == 2


def test_a_request_is_sent_at_most_twice(fake: FakeDaemon) -> None:
    """A daemon that reads the request and hangs up: on a reused connection the
    request is sent once more on a new one, and that failure is reported."""
    fake.json("GET", "/v1/health", {"status": "ok"})

    def hang_up(h: Any, rec: Recorded) -> None:
        h.close_connection = True
        h.connection.shutdown(2)

    fake.on("GET", "/v1/whoami", hang_up)
    client = fake.client()
    client.health()
    with pytest.raises(AirlockConnectionError, match="closed the connection"):
        client.whoami()
    assert [r.connection for r in sent(fake, "GET", "/v1/whoami")] == [1, 2]


def test_a_new_connection_is_never_retried(fake: FakeDaemon) -> None:
    def hang_up(h: Any, rec: Recorded) -> None:
        h.close_connection = True
        h.connection.shutdown(2)

    fake.on("POST", "/v1/sandboxes", hang_up)
    with pytest.raises(AirlockConnectionError, match="closed the connection"):
        fake.client().create_sandbox(profile="untrusted")
    assert len(sent(fake, "POST", "/v1/sandboxes")) == 1


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 20",  # a piece of the status line
        b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\nContent-Ty",  # of the headers
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        b'{"id": "sbx-',  # of the body
    ],
    ids=["status-line", "headers", "body"],
)
def test_a_partly_received_answer_is_not_retried(fake: FakeDaemon, partial: bytes) -> None:
    fake.json("GET", "/v1/health", {"status": "ok"})

    def cut(h: Any, rec: Recorded) -> None:
        h.wfile.write(partial)
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(2)

    fake.on("POST", "/v1/sandboxes", cut)
    client = fake.client()
    client.health()
    with pytest.raises((ProtocolError, AirlockConnectionError)):
        client.create_sandbox(profile="untrusted")
    creates = sent(fake, "POST", "/v1/sandboxes")
    assert [r.connection for r in creates] == [1]  # on the reused connection, once
    assert client._transport._idle == []


def test_a_timeout_is_not_retried_and_applies_to_a_reused_connection(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)

    def slow_exec(h: Any, rec: Recorded) -> None:
        time.sleep(0.6)
        h.reply(200, {"exit_code": 0, "signal": None, "timed_out": False, "duration_ms": 600,
                      "stdout": "", "stderr": ""})

    def slow_health(h: Any, rec: Recorded) -> None:
        time.sleep(0.6)
        h.reply(200, {"status": "ok"})

    fake.on("POST", SBX + "/exec", slow_exec)
    fake.on("GET", "/v1/health", slow_health)
    client = fake.client(timeout=0.3)
    sb = client.get_sandbox("sbx-0123456789abcdef")
    # exec waits for the command's timeout on top of the client's: the reused
    # socket gets the longer timeout ...
    assert sb.exec(["sleep", "0.5"], timeout=5).exit_code == 0
    # ... and the next request on it the client's own again
    started = time.monotonic()
    with pytest.raises(AirlockTimeout):
        client.health()
    assert time.monotonic() - started < 0.55
    assert [r.connection for r in fake.requests] == [1, 1, 1]
    assert len(sent(fake, "GET", "/v1/health")) == 1


def test_close_closes_the_idle_connections(fake: FakeDaemon) -> None:
    fake.json("GET", "/v1/health", {"status": "ok"})
    with fake.client() as client:
        client.health()
        assert len(client._transport._idle) == 1
        assert fake.open_connections() == [1]
    assert client._transport._idle == []
    assert fake.wait_closed(1)
    assert client.health().status == "ok"  # still usable: a new connection
    assert [r.connection for r in fake.requests] == [1, 2]


def test_a_stream_read_to_its_end_gives_its_connection_back(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)

    def chunked(h: Any, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(line({"type": "stdout", "data": "a\n"}))
        h.chunk(line(EXIT0))
        h.end_chunked()

    fake.on("POST", SBX + "/exec/stream", chunked)
    fake.on("POST", SBX + "/exec/stream2", lambda h, rec: h.reply(
        200, body=line({"type": "stdout", "data": "b\n"}) + line(EXIT0), content_type="application/x-ndjson"))
    client = fake.client()
    sb = client.get_sandbox("sbx-0123456789abcdef")
    assert [c.data for c in sb.exec_stream(["x"])] == ["a\n"]
    assert sb.exec_stream(["x"]).wait().exit_code == 0
    # a Content-Length answer instead of chunks, read line by line to its end
    lines = client._transport.stream("POST", SBX + "/exec/stream2", json_body={"command": ["x"]})
    assert len(list(lines.lines())) == 2
    sb.refresh()
    assert {r.connection for r in fake.requests} == {1}
    assert len(client._transport._idle) == 1


def test_an_early_closed_stream_closes_its_connection(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    closed = threading.Event()

    def stream(h: Any, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(line({"type": "stdout", "data": "first\n"}))
        closed.wait(5)
        try:
            h.chunk(line(EXIT0))
            h.end_chunked()
        except OSError:
            h.close_connection = True

    fake.on("POST", SBX + "/exec/stream", stream)
    client = fake.client()
    sb = client.get_sandbox("sbx-0123456789abcdef")
    stream_ = sb.exec_stream(["x"])
    assert next(stream_).data == "first\n"
    stream_.close()
    closed.set()
    assert client._transport._idle == []  # not given back
    assert fake.wait_closed(1)  # but closed
    sb.refresh()
    assert [r.connection for r in fake.requests] == [1, 1, 2]


def test_a_stream_broken_off_by_its_reader_closes_its_connection(fake: FakeDaemon) -> None:
    """Leaving a loop over the raw lines early is closing the stream early."""
    fake.json("GET", "/v1/health", {"status": "ok"})

    def stream(h: Any, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(b"one\ntwo\n")
        h.chunk(b"three\n")
        h.end_chunked()

    fake.on("POST", "/lines", stream)
    client = fake.client()
    lines = client._transport.stream("POST", "/lines")
    for got in lines.lines():
        assert got == b"one"
        break
    lines.close()
    assert client._transport._idle == []
    client.health()
    assert [r.connection for r in fake.requests] == [1, 2]
