"""exec_stream: NDJSON over chunked transfer encoding, read as it arrives."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any, Dict, List

import pytest

from airlock import AirlockError, ExecChunk, ExecError, ExecExit, NotFound, ProtocolError

from conftest import SANDBOX, FakeDaemon, Recorded

SBX = "/v1/sandboxes/sbx-0123456789abcdef"


def line(obj: Dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


EXIT0 = {"type": "exit", "exit_code": 0, "signal": None, "timed_out": False, "duration_ms": 4.1}


def test_chunks_arrive_before_the_command_ends(fake: FakeDaemon) -> None:
    """The server sends the first chunk, then waits until the client has seen it
    before it sends the rest: a client that buffered the whole answer would
    only see the first chunk after the server gave up waiting."""
    fake.json("GET", SBX, SANDBOX)
    seen_first = threading.Event()
    server_saw_client_read: List[bool] = []

    def stream(h, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(line({"type": "stdout", "data": "first\n"}))
        server_saw_client_read.append(seen_first.wait(5))
        time.sleep(0.05)
        # one chunk carrying one and a half lines, then the rest
        h.chunk(line({"type": "stderr", "data": "second\n"}) + b'{"type":"stdout",')
        time.sleep(0.05)
        h.chunk(b'"data":"third\\n"}\n' + line(EXIT0))
        h.end_chunked()

    fake.on("POST", SBX + "/exec/stream", stream)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    stream_ = sb.exec_stream(["pytest", "-q"], timeout=10)
    chunks = []
    for chunk in stream_:
        chunks.append(chunk)
        seen_first.set()
    assert server_saw_client_read == [True], "the first chunk was not delivered before the last was sent"
    assert chunks == [
        ExecChunk("stdout", "first\n", b"first\n"),
        ExecChunk("stderr", "second\n", b"second\n"),
        ExecChunk("stdout", "third\n", b"third\n"),
    ]
    assert stream_.finished and stream_.exit_code == 0
    assert isinstance(stream_.result, ExecExit) and stream_.result.ok and stream_.result.duration_ms == 4.1
    rec = fake.last()
    assert rec.json() == {"command": ["pytest", "-q"], "timeout": 10}
    assert rec.headers["accept"] == "application/x-ndjson"


def test_base64_chunks_and_utf8_split_across_chunks(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731

    def stream(h, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(line({"type": "stdout", "data": b64(b"caf\xc3"), "encoding": "base64"}))
        h.chunk(line({"type": "stdout", "data": b64(b"\xa9\n\xe2\x82"), "encoding": "base64"}))
        h.chunk(line({"type": "stderr", "data": "plain text\n"}))
        h.chunk(line({"type": "future-kind", "data": "ignored"}))
        h.chunk(line({"type": "exit", "exit_code": 1, "signal": None, "timed_out": False, "duration_ms": 2}))
        h.end_chunked()

    fake.on("POST", SBX + "/exec/stream", stream)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    stream_ = sb.exec_stream(["python3", "x.py"])
    chunks = list(stream_)
    stdout = [c for c in chunks if c.stream == "stdout"]
    assert b"".join(c.raw for c in stdout) == b"caf\xc3\xa9\n\xe2\x82"
    # the incomplete character at the end is flushed as U+FFFD (with no new raw bytes)
    assert [(c.data, c.raw) for c in stdout] == [("caf", b"caf\xc3"), ("é\n", b"\xa9\n\xe2\x82"), ("\ufffd", b"")]
    assert [c.data for c in chunks if c.stream == "stderr"] == ["plain text\n"]
    assert stream_.result.exit_code == 1 and not stream_.result.ok
    with pytest.raises(ExecError, match="exited with status 1"):
        stream_.result.check()


def test_result_before_the_end_and_wait(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)

    def stream(h, rec: Recorded) -> None:
        h.start_chunked()
        for i in range(3):
            h.chunk(line({"type": "stdout", "data": f"{i}\n"}))
        h.chunk(line({"type": "exit", "exit_code": None, "signal": 9, "timed_out": True, "duration_ms": 30000}))
        h.end_chunked()

    fake.on("POST", SBX + "/exec/stream", stream)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    with sb.exec_stream(["sleep", "99"], timeout=30) as stream_:
        assert next(stream_).data == "0\n"
        with pytest.raises(RuntimeError, match="not finished"):
            stream_.result
        exit_ = stream_.wait()
    assert exit_.timed_out and exit_.signal == 9 and not exit_.ok
    assert list(stream_) == []


def test_a_stream_without_an_exit_record_is_a_protocol_error(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)

    def stream(h, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(line({"type": "stdout", "data": "partial"}))
        h.end_chunked()

    fake.on("POST", SBX + "/exec/stream", stream)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    stream_ = sb.exec_stream(["x"])
    assert next(stream_).data == "partial"
    with pytest.raises(ProtocolError, match="without an exit record"):
        next(stream_)


def test_an_error_record_in_the_stream_raises(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)

    def stream(h, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(line({"type": "error", "detail": "the sandbox was killed (killed)"}))
        h.end_chunked()

    fake.on("POST", SBX + "/exec/stream", stream)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    with pytest.raises(AirlockError, match="the sandbox was killed"):
        list(sb.exec_stream(["x"]))


def test_an_http_error_is_raised_by_exec_stream_itself(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    fake.problem("POST", SBX + "/exec/stream", 409, "conflict", "Conflict", "the sandbox is frozen (contained)")
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    from airlock import Conflict

    with pytest.raises(Conflict, match="frozen"):
        sb.exec_stream(["x"])


def test_a_stream_with_content_length_instead_of_chunks(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    body = line({"type": "stdout", "data": "a\n"}) + line(EXIT0)
    fake.on("POST", SBX + "/exec/stream",
            lambda h, rec: h.reply(200, body=body, content_type="application/x-ndjson"))
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    stream_ = sb.exec_stream(["x"])
    assert [c.data for c in stream_] == ["a\n"] and stream_.exit_code == 0


def test_unknown_sandbox(fake: FakeDaemon) -> None:
    with pytest.raises(NotFound):
        fake.client().get_sandbox("sbx-nope")
