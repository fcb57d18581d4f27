"""AsyncAirlock: the sync client in worker threads (no pytest-asyncio needed)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import List

import pytest

from airlock import AsyncAirlock, AsyncSandbox, Forbidden

from conftest import SANDBOX, FakeDaemon, Recorded

SBX = "/v1/sandboxes/sbx-0123456789abcdef"


def test_async_round_trip(fake: FakeDaemon) -> None:
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    fake.json("DELETE", SBX, dict(SANDBOX, state="stopped", stop_reason="deleted"))
    fake.json("PUT", SBX + "/files", {"path": "main.py", "size": 9}, status=201)
    fake.json("POST", SBX + "/exec", {"exit_code": 0, "signal": None, "timed_out": False,
                                      "duration_ms": 1, "stdout": "2\n", "stderr": ""})
    fake.json("GET", "/v1/sandboxes", {"sandboxes": [SANDBOX]})
    fake.json("POST", "/v1/kill", {"stopped": [SANDBOX["id"]], "count": 1})
    seen_first = threading.Event()
    waited: List[bool] = []

    def stream(h, rec: Recorded) -> None:
        h.start_chunked()
        h.chunk(json.dumps({"type": "stdout", "data": "a\n"}).encode() + b"\n")
        waited.append(seen_first.wait(5))
        h.chunk(json.dumps({"type": "exit", "exit_code": 0, "signal": None, "timed_out": False,
                            "duration_ms": 1}).encode() + b"\n")
        h.end_chunked()

    fake.on("POST", SBX + "/exec/stream", stream)
    kwargs = {"socket": fake.socket_path} if fake.kind == "unix" else {"url": fake.url}

    async def main() -> None:
        async with AsyncAirlock(**kwargs) as client:
            async with client.sandbox(profile="untrusted", ttl="5m", labels={"workflow": "triage"}) as sb:
                assert isinstance(sb, AsyncSandbox)
                assert sb.id == SANDBOX["id"] and sb.state == "running" and sb.profile == "untrusted"
                await sb.files.write("main.py", "print(2)\n")
                result = await sb.exec(["python3", "main.py"])
                assert result.stdout == "2\n"
                stream_ = await sb.exec_stream(["pytest", "-q"])
                data = []
                async for chunk in stream_:
                    data.append(chunk.data)
                    seen_first.set()
                assert data == ["a\n"] and stream_.result.exit_code == 0
                listed = await client.list_sandboxes(labels={"workflow": "triage"})
                assert [s.id for s in listed] == [SANDBOX["id"]]
                killed = await client.kill(instance=sb)
                assert killed.count == 1
            assert sb.state == "stopped"

    asyncio.run(main())
    assert waited == [True]
    assert fake.requests[-1].method == "DELETE"
    assert [r.json() for r in fake.requests if r.path == "/v1/kill"] == [{"instance": SANDBOX["id"]}]


def test_async_errors_are_the_sync_ones(fake: FakeDaemon) -> None:
    fake.problem("POST", "/v1/sandboxes", 403, "forbidden", "Forbidden", "needs operator")
    kwargs = {"socket": fake.socket_path} if fake.kind == "unix" else {"url": fake.url}

    async def main() -> None:
        async with AsyncAirlock(**kwargs) as client:
            async with client.sandbox():
                pass  # pragma: no cover

    with pytest.raises(Forbidden, match="needs operator"):
        asyncio.run(main())
