"""Integration tests against a real `airlock serve`.

They run only when the environment says where the daemon is:

    AIRLOCK_SOCKET=/path/to/airlock.sock python3 -m pytest -q tests/test_integration.py
    AIRLOCK_URL=https://127.0.0.1:8443 AIRLOCK_TOKEN=alk_... [AIRLOCK_CA_FILE=cert.pem] \\
        python3 -m pytest -q tests/test_integration.py

and are skipped otherwise. The principal needs the operator role (the socket
without a token is admin). Every sandbox gets the label ``workflow=<unique>``
and a short TTL; the module kills that workflow when it is done.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from airlock import (
    Airlock,
    AirlockError,
    AsyncAirlock,
    BadRequest,
    ExecChunk,
    ExecError,
    Sandbox,
)


def _configured() -> bool:
    return bool(
        os.environ.get("AIRLOCK_SOCKET")
        or (os.environ.get("AIRLOCK_URL") and os.environ.get("AIRLOCK_TOKEN"))
    )


pytestmark = pytest.mark.skipif(
    not _configured(),
    reason="set AIRLOCK_SOCKET (or AIRLOCK_URL and AIRLOCK_TOKEN) to run against a real `airlock serve`",
)

PROFILE = "default"
TTL = "3m"
PYTHON_LINES = (
    "import time\n"
    "for i in range(3):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.5)\n"
)


@pytest.fixture(scope="module")
def client() -> Iterator[Airlock]:
    with Airlock(timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def workflow(client: Airlock) -> Iterator[str]:
    name = f"sdk-it-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        client.kill(workflow=name, reason="sdk integration tests done")
    except AirlockError:
        pass


@pytest.fixture
def sandbox(client: Airlock, workflow: str) -> Iterator[Sandbox]:
    with client.sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": workflow}) as sb:
        yield sb


def test_health_whoami_profiles(client: Airlock) -> None:
    assert client.health().status == "ok"
    me = client.whoami()
    assert me.role in ("operator", "admin") and me.principal
    assert PROFILE in [p.name for p in client.profiles()]
    head = client.audit_head()
    assert head["seq"] >= 1 and len(head["hash"]) == 64 and len(head["signature"]) == 128
    assert head["key"].startswith("ed25519:")


def test_create_gives_a_running_sandbox(client: Airlock, sandbox: Sandbox, workflow: str) -> None:
    assert sandbox.id.startswith("sbx-")
    assert sandbox.state == "running" and sandbox.profile == PROFILE
    assert sandbox.labels.get("workflow") == workflow
    again = client.get_sandbox(sandbox.id)
    assert again.id == sandbox.id and again.state == "running"


def test_files_write_and_read_back(sandbox: Sandbox) -> None:
    info = sandbox.files.write("hello.txt", "héllo\n")
    assert info.path.endswith("hello.txt")
    assert sandbox.files.read("hello.txt") == "héllo\n".encode()
    assert sandbox.files.read_text("hello.txt") == "héllo\n"
    blob = bytes(range(256)) * 64
    sandbox.files.write("blob.bin", blob)
    assert sandbox.files.read("blob.bin") == blob
    # the command inside the sandbox sees the file
    result = sandbox.exec(["python3", "-c", "print(open('hello.txt', encoding='utf-8').read(), end='')"])
    assert result.stdout == "héllo\n"


def test_exec_prints_two(sandbox: Sandbox) -> None:
    result = sandbox.exec(["python3", "-c", "print(1+1)"], timeout=30)
    assert result.exit_code == 0 and result.ok and not result.timed_out
    assert result.stdout == "2\n" and result.stdout_bytes == b"2\n"
    assert result.check() is result


def test_exec_stdin_and_binary_output(sandbox: Sandbox) -> None:
    upper = sandbox.exec(["python3", "-c", "import sys; print(sys.stdin.read().upper(), end='')"], stdin="abc\n")
    assert upper.stdout == "ABC\n"
    echo = sandbox.exec(
        ["python3", "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
        stdin=b"\x00\xff\xfe",
    )
    assert echo.stdout_bytes == b"\x00\xff\xfe"
    binary = sandbox.exec(["python3", "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)))"])
    assert binary.stdout_bytes == bytes(range(256))


def test_exec_stream_delivers_lines_as_they_happen(sandbox: Sandbox) -> None:
    start = time.monotonic()
    arrivals: List[Tuple[float, ExecChunk]] = []
    stream = sandbox.exec_stream(["python3", "-c", PYTHON_LINES], timeout=60)
    for chunk in stream:
        arrivals.append((time.monotonic() - start, chunk))
    end = time.monotonic() - start
    stdout = "".join(c.data for _, c in arrivals if c.stream == "stdout")
    assert stdout == "line 0\nline 1\nline 2\n"
    assert stream.result.exit_code == 0 and stream.result.ok
    first = next(t for t, c in arrivals if c.stream == "stdout")
    # the command sleeps 1.5 s after its first line: that line must not wait for the end
    assert end - first >= 0.7, f"the first chunk came {end - first:.2f}s before the end: not streamed"


def test_missing_command_exits_127(sandbox: Sandbox) -> None:
    result = sandbox.exec(["airlock-sdk-no-such-command"])
    assert result.exit_code == 127 and not result.ok
    with pytest.raises(ExecError, match="127"):
        result.check()


def test_path_escape_is_a_bad_request(sandbox: Sandbox) -> None:
    with pytest.raises(BadRequest) as info:
        sandbox.files.write("../x", b"")
    assert info.value.status == 400 and info.value.detail
    with pytest.raises(BadRequest):
        sandbox.files.read("/etc/passwd")


def test_unknown_profile_has_a_useful_detail(client: Airlock, workflow: str) -> None:
    name = "no-such-profile-sdk"
    with pytest.raises(AirlockError) as info:
        client.create_sandbox(profile=name, ttl=TTL, labels={"workflow": workflow})
    err = info.value
    assert err.status is not None and 400 <= err.status < 500
    assert err.detail and name in err.detail, f"the detail does not name the profile: {err.detail!r}"


def test_archive_round_trip(sandbox: Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "main.py").write_text("from pkg.mod import X\nprint(X)\n")
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "mod.py").write_text("X = 42\n")
    sandbox.files.upload_archive("proj", src)
    result = sandbox.exec(["python3", "main.py"], cwd="/workspace/proj")
    assert result.stdout == "42\n", result.stderr
    tar_bytes = sandbox.files.download_archive("proj")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = {n.lstrip("./") for n in tar.getnames()}
    assert any(n.endswith("pkg/mod.py") for n in names), names


def test_delete_stops_the_sandbox(client: Airlock, workflow: str) -> None:
    sb = client.create_sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": workflow})
    sb.delete()
    assert sb.state == "stopped" and sb.stop_reason == "deleted"
    with pytest.raises(AirlockError) as info:
        sb.exec(["python3", "-c", "pass"])
    assert info.value.status in (404, 409)


def test_context_manager_deletes(client: Airlock, workflow: str) -> None:
    with client.sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": workflow}) as sb:
        assert sb.running
    try:
        assert client.get_sandbox(sb.id).state == "stopped"
    except AirlockError as err:
        assert err.status == 404


def test_list_with_a_label_filter(client: Airlock, workflow: str) -> None:
    tag = uuid.uuid4().hex[:8]
    a = client.create_sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": workflow, "session": f"a-{tag}"})
    b = client.create_sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": workflow, "session": f"b-{tag}"})
    try:
        only_a = client.list_sandboxes(labels={"session": f"a-{tag}"})
        assert [s.id for s in only_a] == [a.id]
        both = {s.id for s in client.list_sandboxes(state="running", labels={"workflow": workflow})}
        assert {a.id, b.id} <= both
        assert client.list_sandboxes(labels={"session": f"none-{tag}"}) == []
    finally:
        a.delete()
        b.delete()


def test_kill_by_workflow_stops_its_sandboxes(client: Airlock) -> None:
    wf = f"sdk-kill-{uuid.uuid4().hex[:10]}"
    a = client.create_sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": wf})
    b = client.create_sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": wf})
    result = client.kill(workflow=wf, reason="sdk integration test")
    assert {a.id, b.id} <= set(result.stopped) and result.count >= 2
    for sb in (a, b):
        sb.refresh()
        # docs/api.md: the stop reason is `killed`, or the reason given to /v1/kill
        assert sb.state == "stopped" and sb.stop_reason == "sdk integration test"
    assert client.list_sandboxes(state="running", labels={"workflow": wf}) == []


def test_async_client(workflow: str) -> None:
    async def main() -> None:
        async with AsyncAirlock(timeout=120) as client:
            async with client.sandbox(profile=PROFILE, ttl=TTL, labels={"workflow": workflow}) as sb:
                await sb.files.write("a.py", "print(6*7)\n")
                assert await sb.files.read("a.py") == b"print(6*7)\n"
                result = await sb.exec(["python3", "a.py"])
                assert result.stdout == "42\n"
                stream = await sb.exec_stream(["python3", "-c", PYTHON_LINES])
                text = ""
                async for chunk in stream:
                    text += chunk.data
                assert text == "line 0\nline 1\nline 2\n" and stream.result.exit_code == 0
                listed = await client.list_sandboxes(labels={"workflow": workflow})
                assert sb.id in [s.id for s in listed]
            assert sb.state == "stopped"

    asyncio.run(main())
