"""Requests the client sends and how it reads the answers (against the fake daemon)."""

from __future__ import annotations

import base64
import io
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from airlock import (
    AirlockError,
    BadRequest,
    Conflict,
    ExecError,
    ExecResult,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Sandbox,
    ServerError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)

from conftest import SANDBOX, FakeDaemon, Recorded, problem

SBX = "/v1/sandboxes/sbx-0123456789abcdef"


def test_health_without_token_sends_no_authorization(fake: FakeDaemon) -> None:
    fake.json("GET", "/v1/health", {"status": "ok", "version": "0.9.0"})
    health = fake.client(token="").health()
    assert (health.status, health.version) == ("ok", "0.9.0")
    rec = fake.last()
    assert rec.method == "GET" and rec.target == "/v1/health"
    assert "authorization" not in rec.headers
    assert rec.headers["user-agent"].startswith("airlock-python/")
    assert rec.headers["accept"] == "application/json"


def test_token_is_sent_as_bearer(fake: FakeDaemon) -> None:
    fake.json("GET", "/v1/whoami", {"principal": "token:3f9a", "role": "operator", "expires_at": "2027-01-01T00:00:00Z"})
    me = fake.client(token="alk_0123456789ab_secret").whoami()
    assert me.principal == "token:3f9a" and me.role == "operator"
    assert fake.last().headers["authorization"] == "Bearer alk_0123456789ab_secret"


def test_audit_head(fake: FakeDaemon) -> None:
    head = {"seq": 42, "hash": "ab" * 32, "time": "2026-12-07T10:00:00.000000000Z", "chain": "c0ffee",
            "key": "ed25519:" + "cd" * 32, "signature": "ef" * 64}
    fake.json("GET", "/v1/audit/head", head)
    assert fake.client().audit_head() == head
    assert fake.last().method == "GET" and fake.last().target == "/v1/audit/head"


def test_token_from_environment(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_TOKEN", "alk_envtoken")
    fake.json("GET", "/v1/health", {"status": "ok"})
    fake.client().health()
    assert fake.last().headers["authorization"] == "Bearer alk_envtoken"


def test_url_with_a_path_prefix(short_tmp: Path) -> None:
    daemon = FakeDaemon("tcp", short_tmp)
    try:
        daemon.json("GET", "/airlock/v1/health", {"status": "ok"})
        from airlock import Airlock

        assert Airlock(url=daemon.url + "/airlock/").health().status == "ok"
        assert daemon.last().path == "/airlock/v1/health"
    finally:
        daemon.close()


def test_profiles(fake: FakeDaemon) -> None:
    limits = {"wall_clock_seconds": 3600, "memory_bytes": 4294967296, "cpus": 2, "pids": 1024,
              "disk_bytes": 1073741824, "open_files": 4096, "file_size_bytes": None}
    fake.json("GET", "/v1/profiles", {"profiles": [
        {"name": "default", "description": "d", "network_mode": "none", "workspace": "rw", "limits": limits},
        {"name": "untrusted", "description": None, "network_mode": "none", "workspace": "ro",
         "limits": dict(limits, wall_clock_seconds=300)},
    ]})
    profiles = fake.client().profiles()
    assert [p.name for p in profiles] == ["default", "untrusted"]
    assert profiles[0].workspace == "rw" and profiles[0].network_mode == "none"
    assert profiles[0].limits.memory_bytes == 4294967296 and profiles[0].limits.file_size_bytes is None
    assert profiles[1].limits.wall_clock_seconds == 300.0 and profiles[1].description is None


def test_create_sandbox_sends_only_given_fields_and_parses_the_answer(fake: FakeDaemon) -> None:
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    sb = fake.client().create_sandbox(
        "untrusted",
        labels={"workflow": "triage"},
        ttl="5m",
        idle_timeout=timedelta(minutes=2),
        limits={"memory": "256M", "cpus": 0.5},
    )
    rec = fake.last()
    assert rec.headers["content-type"] == "application/json"
    assert rec.json() == {
        "profile": "untrusted",
        "labels": {"workflow": "triage"},
        "ttl": "5m",
        "idle_timeout": 120,
        "limits": {"memory": "256M", "cpus": 0.5},
    }
    assert isinstance(sb, Sandbox)
    assert sb.id == "sbx-0123456789abcdef" and sb.state == "running" and sb.running
    assert sb.labels == {"workflow": "triage"}
    assert sb.limits.memory_bytes == 268435456 and sb.limits.cpus == 0.5
    assert sb.usage.memory_peak_bytes == 2097152
    assert sb.remaining.execs == 97 and sb.remaining.ttl_seconds == 287.5
    assert sb.network == {"mode": "none"} and sb.workspace_id is None
    assert sb.raw["expires_at"] == "2026-11-24T10:05:00Z"


def test_create_sandbox_with_no_arguments_sends_an_empty_object(fake: FakeDaemon) -> None:
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    fake.client().create_sandbox()
    assert fake.last().json() == {}


def test_sandbox_context_manager_deletes_on_exit(fake: FakeDaemon) -> None:
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    fake.json("DELETE", SBX, dict(SANDBOX, state="stopped", stop_reason="deleted"))
    with fake.client().sandbox(profile="untrusted", ttl="5m") as sb:
        assert sb.state == "running"
    assert [r.method for r in fake.requests] == ["POST", "DELETE"]
    assert sb.state == "stopped" and sb.stop_reason == "deleted"


def test_sandbox_context_manager_deletes_when_the_block_raises(fake: FakeDaemon) -> None:
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    fake.problem("DELETE", SBX, 500, "internal", "Internal Server Error", "boom")
    with pytest.raises(KeyError):  # the block's error wins over the failed delete
        with fake.client().sandbox():
            raise KeyError("x")
    assert fake.requests[-1].method == "DELETE"


def test_sandbox_context_manager_tolerates_an_already_gone_sandbox(fake: FakeDaemon) -> None:
    fake.json("POST", "/v1/sandboxes", SANDBOX, status=201)
    fake.problem("DELETE", SBX, 404, "not-found", "Not Found", "no sandbox sbx-0123456789abcdef")
    with fake.client().sandbox():
        pass


def test_get_refresh_and_id_quoting(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    client = fake.client()
    sb = client.get_sandbox("sbx-0123456789abcdef")
    fake.json("GET", SBX, dict(SANDBOX, execs=4, state="frozen"))
    assert sb.refresh() is sb and sb.execs == 4 and sb.state == "frozen" and not sb.running
    with pytest.raises(NotFound):
        client.get_sandbox("../tokens")
    assert fake.last().target == "/v1/sandboxes/..%2Ftokens"


def test_list_sandboxes_query(fake: FakeDaemon) -> None:
    fake.json("GET", "/v1/sandboxes", {"sandboxes": [SANDBOX, dict(SANDBOX, id="sbx-2")]})
    client = fake.client()
    found = client.list_sandboxes(state="running", labels={"workflow": "triage", "user": "ana b"})
    assert [s.id for s in found] == ["sbx-0123456789abcdef", "sbx-2"]
    rec = fake.last()
    assert rec.target == "/v1/sandboxes?state=running&label=workflow=triage&label=user=ana%20b"
    assert rec.query == [("state", "running"), ("label", "workflow=triage"), ("label", "user=ana b")]
    client.list_sandboxes()
    assert fake.last().target == "/v1/sandboxes"


@pytest.mark.parametrize(
    "kwargs, body",
    [
        ({"instance": "sbx-1"}, {"instance": "sbx-1"}),
        ({"session": "s-1", "reason": "runaway"}, {"session": "s-1", "reason": "runaway"}),
        ({"workflow": "triage"}, {"workflow": "triage"}),
        ({"selector": {"agent": "fixer"}}, {"selector": {"agent": "fixer"}}),
        ({"all": True}, {"all": True}),
    ],
)
def test_kill_bodies(fake: FakeDaemon, kwargs: dict, body: dict) -> None:
    fake.json("POST", "/v1/kill", {"stopped": ["sbx-1"], "count": 1})
    result = fake.client().kill(**kwargs)
    assert fake.last().json() == body
    assert result.stopped == ["sbx-1"] and result.count == 1


def test_kill_needs_exactly_one_target(fake: FakeDaemon) -> None:
    client = fake.client()
    with pytest.raises(ValueError):
        client.kill()
    with pytest.raises(ValueError):
        client.kill(session="a", workflow="b")
    assert fake.requests == []


def test_exec_body_and_text_result(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    fake.json("POST", SBX + "/exec", {
        "exit_code": 0, "signal": None, "timed_out": False, "duration_ms": 12.3,
        "stdout": "2\n", "stderr": "", "stdout_truncated": False, "stderr_truncated": False,
    })
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    result = sb.exec(["python3", "-c", "print(1+1)"], stdin="text", env={"LANG": "C"}, cwd="/workspace", timeout=30)
    assert fake.last().json() == {
        "command": ["python3", "-c", "print(1+1)"], "stdin": "text",
        "env": {"LANG": "C"}, "cwd": "/workspace", "timeout": 30,
    }
    assert isinstance(result, ExecResult)
    assert result.stdout == "2\n" and result.stdout_bytes == b"2\n" and result.stderr == ""
    assert result.ok and result.check() is result and result.duration_ms == 12.3


def test_exec_bytes_stdin_and_base64_output(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    blob = bytes(range(256))
    fake.json("POST", SBX + "/exec", {
        "exit_code": 3, "signal": None, "timed_out": False, "duration_ms": 1,
        "stdout": base64.b64encode(blob).decode(), "stdout_encoding": "base64",
        "stderr": base64.b64encode(b"caf\xc3\xa9 \xff oops\n").decode(), "stderr_encoding": "base64",
        "stdout_truncated": True, "stderr_truncated": False,
    })
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    result = sb.exec(["cat"], stdin=b"\x00\x01\xff", timeout=timedelta(seconds=1.5))
    body = fake.last().json()
    assert body["stdin_base64"] == base64.b64encode(b"\x00\x01\xff").decode() and "stdin" not in body
    assert body["timeout"] == 1.5
    sb.exec(["cat"], timeout="2m")
    assert fake.last().json()["timeout"] == "2m"
    assert result.stdout_bytes == blob and result.stdout_truncated
    assert result.stderr_bytes == b"caf\xc3\xa9 \xff oops\n"
    assert result.stderr == "café \ufffd oops\n"
    assert not result.ok
    with pytest.raises(ExecError) as info:
        result.check()
    assert info.value.result is result
    assert "`cat` exited with status 3" in str(info.value) and "oops" in str(info.value)


def test_exec_failure_descriptions() -> None:
    missing = ExecResult(exit_code=127, command=["nope"], stderr_bytes=b"nope: not found\n")
    assert "127 (command not found)" in str(ExecError(missing))
    killed = ExecResult(exit_code=None, signal=9, command=["sleep", "9"])
    assert "killed by signal 9" in killed.describe_failure()
    slow = ExecResult(exit_code=None, timed_out=True, duration_ms=30000, command=["sh", "-c", "sleep 99"])
    assert "`sh -c 'sleep 99'` timed out after 30.0s" in slow.describe_failure()


def test_exec_refuses_a_string_command(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    with pytest.raises(TypeError, match="list of arguments"):
        sb.exec("echo hi")  # type: ignore[arg-type]


def test_files_write_read_and_path_encoding(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    fake.json("PUT", SBX + "/files", {"path": "dir/a b.txt", "size": 5}, status=201)

    def read(h, rec: Recorded) -> None:
        h.reply(200, body=b"h\xc3\xa9llo", content_type="application/octet-stream")

    fake.on("GET", SBX + "/files", read)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    info = sb.files.write("dir/a b.txt", "héllo")
    rec = fake.last()
    assert rec.target == SBX + "/files?path=dir/a%20b.txt"
    assert rec.body == "héllo".encode() and rec.headers["content-type"] == "application/octet-stream"
    assert (info.path, info.size) == ("dir/a b.txt", 5)
    sb.files.write("bin", b"\x00\xff")
    assert fake.last().body == b"\x00\xff"
    sb.files.write("empty", b"")
    assert fake.last().body == b"" and fake.last().headers["content-length"] == "0"
    assert sb.files.read("dir/a b.txt") == b"h\xc3\xa9llo"
    assert fake.last().query == [("path", "dir/a b.txt")]
    assert sb.files.read_text("dir/a b.txt") == "héllo"


def test_upload_archive_from_a_directory_bytes_or_tar_file(fake: FakeDaemon, tmp_path: Path) -> None:
    fake.json("GET", SBX, SANDBOX)
    fake.json("PUT", SBX + "/archive", {"path": "src"}, status=201)
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "main.py").write_text("print(1)\n")
    (src / "pkg" / "mod.py").write_text("X = 1\n")
    assert sb.files.upload_archive("src", src).path == "src"
    rec = fake.last()
    assert rec.target == SBX + "/archive?path=src" and rec.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(rec.body)) as tar:
        names = sorted(tar.getnames())
        assert names == ["main.py", "pkg", "pkg/mod.py"]
        member = tar.getmember("main.py")
        assert member.uid == 0 and member.uname == ""
        assert tar.extractfile(member).read() == b"print(1)\n"  # type: ignore[union-attr]
    sb.files.upload_archive("src", b"TARBYTES")
    assert fake.last().body == b"TARBYTES"
    tar_file = tmp_path / "a.tar"
    tar_file.write_bytes(b"FILEBYTES")
    sb.files.upload_archive("src", str(tar_file))
    assert fake.last().body == b"FILEBYTES"
    with pytest.raises(FileNotFoundError):
        sb.files.upload_archive("src", str(tmp_path / "missing"))


def test_download_archive(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    fake.on("GET", SBX + "/archive", lambda h, rec: h.reply(200, body=b"TAR", content_type="application/x-tar"))
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    assert sb.files.download_archive(".") == b"TAR"
    assert fake.last().headers["accept"] == "application/x-tar" and fake.last().query == [("path", ".")]


def test_contain_and_delete_update_the_sandbox(fake: FakeDaemon) -> None:
    fake.json("GET", SBX, SANDBOX)
    snapshot = {"id": "snap-1", "sandbox": SANDBOX["id"], "created_at": "2026-11-24T10:01:00Z",
                "reason": "exfiltration", "size_bytes": 10240,
                "processes": [{"pid": 1, "command": ["sleep", "100"], "state": "S"}],
                "links": [{"kind": "egress", "socket": "/run/airlock/x/egress.sock", "port": 3128}],
                "revoked": ["egress-gateway"]}
    fake.json("POST", SBX + "/contain", {"sandbox": dict(SANDBOX, state="frozen", stop_reason="contained"),
                                         "snapshot": snapshot})
    sb = fake.client().get_sandbox("sbx-0123456789abcdef")
    c = sb.contain("exfiltration")
    assert fake.last().json() == {"reason": "exfiltration"}
    assert c.sandbox is sb and sb.state == "frozen" and sb.stop_reason == "contained"
    assert c.snapshot.id == "snap-1" and c.snapshot.processes[0].command == ["sleep", "100"]
    assert c.snapshot.links[0].port == 3128 and c.snapshot.revoked == ["egress-gateway"]
    fake.json("DELETE", SBX, dict(SANDBOX, state="stopped", stop_reason="deleted"))
    assert sb.delete() is sb and sb.state == "stopped"


def test_tokens_snapshots_workspaces_and_policy(fake: FakeDaemon) -> None:
    client = fake.client()
    fake.json("POST", "/v1/tokens", {"id": "0123456789ab", "token": "alk_0123456789ab_s3cret", "role": "operator",
                                      "name": "ci", "created_at": "t0", "expires_at": "t1"}, status=201)
    new = client.tokens.create("operator", ttl=timedelta(days=30), name="ci")
    assert fake.last().json() == {"role": "operator", "ttl": 2592000, "name": "ci"}
    assert new.token == "alk_0123456789ab_s3cret" and "s3cret" not in repr(new)
    fake.json("GET", "/v1/tokens", {"tokens": [{"id": "0123456789ab", "role": "operator", "name": "ci",
                                                "created_at": "t0", "expires_at": "t1", "revoked_at": None}]})
    tokens = client.tokens.list()
    assert tokens[0].id == "0123456789ab" and not tokens[0].revoked
    fake.json("DELETE", "/v1/tokens/0123456789ab", None, status=204)
    assert client.tokens.revoke(new) is None
    assert fake.last().method == "DELETE"

    fake.json("GET", "/v1/snapshots", {"snapshots": [{"id": "snap-1", "sandbox": "sbx-1", "size_bytes": 3}]})
    fake.json("GET", "/v1/snapshots/snap-1", {"id": "snap-1", "sandbox": "sbx-1", "reason": "r"})
    fake.on("GET", "/v1/snapshots/snap-1/archive", lambda h, rec: h.reply(200, body=b"T", content_type="application/x-tar"))
    fake.json("DELETE", "/v1/snapshots/snap-1", None, status=204)
    assert [s.id for s in client.snapshots.list()] == ["snap-1"]
    assert client.snapshots.get("snap-1").reason == "r"
    assert client.snapshots.download("snap-1") == b"T"
    client.snapshots.delete("snap-1")

    fake.json("GET", "/v1/workspaces", {"workspaces": [{"id": "ws-1", "sandbox": "sbx-1", "size_bytes": 4096,
                                                        "labels": {"workflow": "triage"}}]})
    fake.json("DELETE", "/v1/workspaces/ws-1", None, status=204)
    ws = client.workspaces.list()
    assert ws[0].labels == {"workflow": "triage"} and ws[0].size_bytes == 4096
    client.workspaces.delete(ws[0])
    assert fake.last().target == "/v1/workspaces/ws-1"

    fake.json("PUT", "/v1/policy", None, status=204)
    assert client.set_policy("profiles: {}\n") is None
    assert fake.last().body == b"profiles: {}\n" and fake.last().headers["content-type"] == "application/yaml"


# -- problem details ----------------------------------------------------------


@pytest.mark.parametrize(
    "status, slug, cls",
    [
        (400, "bad-request", BadRequest),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Forbidden),
        (404, "not-found", NotFound),
        (409, "conflict", Conflict),
        (413, "payload-too-large", PayloadTooLarge),
        (415, "unsupported-media-type", UnsupportedMediaType),
        (422, "validation", ValidationError),
        (429, "too-many-requests", RateLimited),
        (500, "internal", ServerError),
        (503, "unavailable", ServerError),
        (418, "teapot", AirlockError),
    ],
)
def test_problem_details_map_to_exceptions(fake: FakeDaemon, status: int, slug: str, cls: type) -> None:
    fake.problem("POST", "/v1/sandboxes", status, slug, "Title", f"what went wrong ({slug})")
    with pytest.raises(cls) as info:
        fake.client().create_sandbox()
    err = info.value
    assert type(err) is cls
    assert err.status == status and err.slug == slug and err.title == "Title"
    assert err.type == f"https://airlock.dev/problems/{slug}"
    assert err.detail == f"what went wrong ({slug})"
    assert str(err) == f"Title ({status}): what went wrong ({slug})"


def test_forbidden_with_field_errors(fake: FakeDaemon) -> None:
    detail = ("the token tok 3f9a has the role viewer; creating a sandbox needs operator "
              "(ask an admin for an operator token)")
    fake.json("POST", "/v1/sandboxes", problem(403, "forbidden", "Forbidden", detail,
                                               errors=[{"field": "labels.workflow", "message": "too long"}],
                                               instance="/v1/sandboxes"), status=403)
    with pytest.raises(Forbidden) as info:
        fake.client().create_sandbox(labels={"workflow": "x" * 300})
    err = info.value
    assert err.errors == [{"field": "labels.workflow", "message": "too long"}]
    assert err.problem["instance"] == "/v1/sandboxes"
    text = str(err)
    assert text.startswith("Forbidden (403): the token tok 3f9a has the role viewer")
    assert "ask an admin for an operator token" in text and "labels.workflow: too long" in text
    assert isinstance(err, AirlockError)


def test_validation_type_wins_over_status_and_is_a_bad_request(fake: FakeDaemon) -> None:
    fake.problem("POST", "/v1/sandboxes", 400, "validation", "Validation failed", "unknown field 'ttl_s'",
                 errors=[{"field": "ttl_s", "message": "unknown field"}])
    with pytest.raises(BadRequest) as info:
        fake.client().create_sandbox()
    assert isinstance(info.value, ValidationError) and "ttl_s" in str(info.value)


def test_rate_limited_reads_retry_after(fake: FakeDaemon) -> None:
    fake.json("GET", "/v1/sandboxes", problem(429, "too-many-requests", "Too Many Requests", "slow down"),
              status=429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as info:
        fake.client().list_sandboxes()
    assert info.value.retry_after == 7.0


def test_an_error_that_is_not_problem_json(fake: FakeDaemon) -> None:
    fake.on("GET", "/v1/health", lambda h, rec: h.reply(502, body=b"<html>bad gateway</html>", content_type="text/html"))
    with pytest.raises(ServerError) as info:
        fake.client().health()
    assert info.value.status == 502 and info.value.detail == "<html>bad gateway</html>"
    assert "Bad Gateway (502)" in str(info.value)


def test_413_when_the_daemon_refuses_the_body_without_reading_it(unix_fake: FakeDaemon) -> None:
    unix_fake.json("GET", SBX, SANDBOX)

    def refuse(h, rec: Recorded) -> None:
        h.reply(413, problem(413, "payload-too-large", "Payload Too Large",
                             "the file is larger than 64 MiB (the daemon's --max-upload)"),
                headers={"Connection": "close"})
        h.close_connection = True

    unix_fake.on("PUT", SBX + "/files", refuse, raw_body=True)
    sb = unix_fake.client().get_sandbox("sbx-0123456789abcdef")
    with pytest.raises(PayloadTooLarge) as info:
        sb.files.write("big", b"\0" * (8 << 20))
    assert "64 MiB" in str(info.value)
