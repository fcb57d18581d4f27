"""Where the client connects, and what it says when it cannot."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Tuple

import pytest

from airlock import Airlock, AirlockConnectionError, AirlockTimeout, default_socket_path

from conftest import FakeDaemon, Recorded, free_tcp_port


def test_default_socket_for_a_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_socket_path() == str(tmp_path / "state" / "airlock" / "airlock.sock")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_socket_path() == str(tmp_path / ".local" / "state" / "airlock" / "airlock.sock")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_socket_path() == str(tmp_path / ".local" / "state" / "airlock" / "airlock.sock")


def test_default_socket_for_root_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_socket_path() == "/var/lib/airlock/airlock.sock"
    assert Airlock().endpoint == "unix:/var/lib/airlock/airlock.sock"
    monkeypatch.setenv("AIRLOCK_SOCKET", "/tmp/x.sock")
    assert Airlock().endpoint == "unix:/tmp/x.sock"


def test_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_URL", "https://airlock.example:8443")
    assert Airlock().endpoint == "https://airlock.example:8443"
    monkeypatch.setenv("AIRLOCK_SOCKET", "/tmp/s.sock")
    assert Airlock().endpoint == "unix:/tmp/s.sock"  # the socket variable wins
    assert Airlock(url="http://127.0.0.1:9").endpoint == "http://127.0.0.1:9"  # arguments win
    assert Airlock(url="unix:///run/a.sock").endpoint == "unix:/run/a.sock"
    with pytest.raises(ValueError):
        Airlock(socket="/a", url="http://b")
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        Airlock(url="ftp://x")


def test_env_url_with_token_reaches_a_tcp_daemon(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = FakeDaemon("tcp", short_tmp)
    try:
        daemon.json("GET", "/v1/health", {"status": "ok"})
        monkeypatch.setenv("AIRLOCK_URL", daemon.url)
        monkeypatch.setenv("AIRLOCK_TOKEN", "alk_x")
        assert Airlock().health().status == "ok"
        assert daemon.last().headers["authorization"] == "Bearer alk_x"
    finally:
        daemon.close()


def test_a_missing_socket_names_it_and_suggests_airlock_serve(short_tmp: Path) -> None:
    path = str(short_tmp / "nope.sock")
    with pytest.raises(AirlockConnectionError) as info:
        Airlock(socket=path).health()
    err = info.value
    assert path in str(err) and "airlock serve" in str(err)
    assert err.endpoint == f"unix:{path}" and err.status is None
    assert isinstance(err, ConnectionError)


def test_a_refused_tcp_port_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}"
    with pytest.raises(AirlockConnectionError) as info:
        Airlock(url=url, token="t").health()
    assert url in str(info.value) and "airlock serve" in str(info.value)


def test_a_socket_of_another_user(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket as socket_mod

    def deny(self: socket_mod.socket, address: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket_mod.socket, "connect", deny)
    with pytest.raises(AirlockConnectionError, match="mode 0600"):
        Airlock(socket=str(short_tmp / "a.sock")).health()


def test_a_slow_daemon_times_out(fake: FakeDaemon) -> None:
    def slow(h, rec: Recorded) -> None:
        time.sleep(1.0)
        h.reply(200, {"status": "ok"})

    fake.on("GET", "/v1/health", slow)
    with pytest.raises(AirlockTimeout) as info:
        fake.client(timeout=0.2).health()
    assert "0.2s" in str(info.value) and isinstance(info.value, TimeoutError)


def test_a_daemon_that_hangs_up(fake: FakeDaemon) -> None:
    def hang_up(h, rec: Recorded) -> None:
        h.close_connection = True
        h.connection.shutdown(2)

    fake.on("GET", "/v1/health", hang_up)
    with pytest.raises(AirlockConnectionError, match="closed the connection"):
        fake.client().health()


def test_https_with_a_ca_file(tls_fake: FakeDaemon, tls_cert: Tuple[str, str]) -> None:
    tls_fake.json("GET", "/v1/health", {"status": "ok"})
    assert tls_fake.url.startswith("https://")
    assert Airlock(url=tls_fake.url, token="t", ca_file=tls_cert[0]).health().status == "ok"
    assert tls_fake.last().headers["authorization"] == "Bearer t"
    assert Airlock(url=tls_fake.url, token="t", verify=False).health().status == "ok"


def test_https_without_trusting_the_certificate(tls_fake: FakeDaemon) -> None:
    with pytest.raises(AirlockConnectionError) as info:
        Airlock(url=tls_fake.url, token="t").health()
    assert "TLS verification" in str(info.value) and "ca_file" in str(info.value)


def test_ca_file_from_the_environment(tls_fake: FakeDaemon, tls_cert: Tuple[str, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tls_fake.json("GET", "/v1/health", {"status": "ok"})
    monkeypatch.setenv("AIRLOCK_URL", tls_fake.url)
    monkeypatch.setenv("AIRLOCK_CA_FILE", tls_cert[0])
    assert Airlock().health().status == "ok"
