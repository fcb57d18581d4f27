"""The synchronous client: :class:`Airlock`."""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote

from ._http import Transport, default_socket_path
from .errors import AirlockError, Conflict, NotFound
from .models import (
    Health,
    KillResult,
    NewToken,
    Profile,
    Snapshot,
    TokenInfo,
    WhoAmI,
    Workspace,
    _obj,
)
from .sandbox import Sandbox

__all__ = ["Airlock", "Tokens", "Snapshots", "Workspaces", "Duration"]

#: A duration: ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, a number of seconds, or a timedelta.
Duration = Union[str, int, float, timedelta]


def _duration(value: Duration) -> Union[str, int, float]:
    if isinstance(value, timedelta):
        secs = value.total_seconds()
        return int(secs) if secs.is_integer() else secs
    return value


def _id(value: Union[str, Any]) -> str:
    return str(value if isinstance(value, str) else getattr(value, "id", value))


def _items(data: Any, key: str) -> List[Mapping[str, Any]]:
    items = _obj(data).get(key)
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


class Airlock:
    """A client of the ``airlock serve`` control-plane API.

    Where it connects, in order:

    1. ``socket=`` (a Unix socket path) or ``url=`` (``https://HOST:PORT``,
       ``http://127.0.0.1:PORT`` for a daemon run with ``--insecure-http``, or
       ``unix:///path/to.sock``);
    2. ``$AIRLOCK_SOCKET``, then ``$AIRLOCK_URL``;
    3. the daemon's default socket: ``/var/lib/airlock/airlock.sock`` as root,
       else ``$XDG_STATE_HOME/airlock/airlock.sock`` (``~/.local/state/...``).

    ``token`` defaults to ``$AIRLOCK_TOKEN`` and is sent as
    ``Authorization: Bearer``; it is required over TCP, optional on the socket
    (whose file permission is the authentication; pass ``token=""`` to send
    none even when ``$AIRLOCK_TOKEN`` is set). For https, ``ca_file`` (default
    ``$AIRLOCK_CA_FILE``) names the CA to trust, and ``verify=False`` turns
    certificate checks off (tests only).

    ``timeout`` (seconds, ``None`` for none) bounds connecting and each
    answer; commands get their own timeout on top of it.

    Connections are kept alive and reused: each request takes an idle
    connection (or opens one) for itself and puts it back once its answer has
    been read, so one client may be shared by threads. Up to four idle
    connections are kept; ``close()`` (or leaving a ``with`` block) closes them.
    """

    def __init__(
        self,
        socket: Optional[str] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = 60.0,
        *,
        ca_file: Optional[str] = None,
        verify: bool = True,
        user_agent: Optional[str] = None,
    ) -> None:
        if socket is not None and url is not None:
            raise ValueError("give socket= or url=, not both")
        if socket is None and url is None:
            socket = os.environ.get("AIRLOCK_SOCKET") or None
            if socket is None:
                url = os.environ.get("AIRLOCK_URL") or None
            if socket is None and url is None:
                socket = default_socket_path()
        if token is None:
            token = os.environ.get("AIRLOCK_TOKEN") or None
        if ca_file is None:
            ca_file = os.environ.get("AIRLOCK_CA_FILE") or None
        self._transport = Transport(
            socket_path=socket,
            url=url,
            token=token or None,
            timeout=timeout,
            ca_file=ca_file,
            verify=verify,
            user_agent=user_agent,
        )
        self.tokens = Tokens(self)
        """Tokens (admin): ``create``, ``list``, ``revoke``."""
        self.snapshots = Snapshots(self)
        """Containment snapshots: ``list``, ``get``, ``download``, ``delete``."""
        self.workspaces = Workspaces(self)
        """Persisted workspaces: ``list``, ``delete``."""

    # -- plumbing ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``unix:/path/to/airlock.sock`` or the base URL."""
        return self._transport.endpoint

    @property
    def timeout(self) -> Optional[float]:
        return self._transport.timeout

    def __repr__(self) -> str:
        return f"Airlock({self.endpoint!r})"

    def close(self) -> None:
        """Close the idle keep-alive connections.

        The client stays usable: a later request opens a new connection.
        """
        self._transport.close()

    def __enter__(self) -> "Airlock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, query: Optional[List[Tuple[str, str]]] = None) -> Any:
        return self._transport.request("GET", path, query=query).json()

    # -- daemon --------------------------------------------------------------

    def health(self) -> Health:
        """``GET /v1/health``: ``status`` (``"ok"``) and the daemon's ``version``."""
        return Health.from_json(_obj(self._get("/v1/health")))

    def whoami(self) -> WhoAmI:
        """Who the daemon thinks you are: ``principal``, ``role``, ``expires_at``."""
        return WhoAmI.from_json(_obj(self._get("/v1/whoami")))

    def audit_head(self) -> Dict[str, Any]:
        """``GET /v1/audit/head``: the audit log's newest signed head (``seq``,
        ``hash``, ``time``, ``chain``, ``key``, ``signature``), to keep off the host
        for ``airlock audit verify --anchor FILE``."""
        return dict(_obj(self._get("/v1/audit/head")))

    def profiles(self) -> List[Profile]:
        """The profiles sandboxes can be created with."""
        return [Profile.from_json(p) for p in _items(self._get("/v1/profiles"), "profiles")]

    def set_policy(self, yaml_text: str) -> Any:
        """Replace the daemon's policy (admin). The YAML is validated first;
        a refused policy raises :class:`~airlock.ValidationError` or
        :class:`~airlock.BadRequest` naming the problem. Returns the decoded
        answer, if any."""
        resp = self._transport.request(
            "PUT", "/v1/policy", body=yaml_text.encode("utf-8"), content_type="application/yaml"
        )
        return resp.json() if resp.body and "json" in resp.content_type else None

    # -- sandboxes -----------------------------------------------------------

    def create_sandbox(
        self,
        profile: Optional[str] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        ttl: Optional[Duration] = None,
        idle_timeout: Optional[Duration] = None,
        max_execs: Optional[int] = None,
        limits: Optional[Mapping[str, Any]] = None,
        env: Optional[Mapping[str, str]] = None,
        persist: Optional[bool] = None,
        workspace: Optional[Union[str, Workspace]] = None,
    ) -> Sandbox:
        """Create a sandbox (operator). Overrides can only tighten the profile.

        :param profile: the profile's name (the daemon's default: ``"default"``).
        :param labels: e.g. ``{"workflow": "triage", "session": "s-1"}``; keys
            ``[a-z0-9_.-]{1,63}``, at most 32 labels.
        :param ttl: ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, seconds or a
            ``timedelta``; at most the profile's wall clock.
        :param idle_timeout: stop after this long without activity.
        :param max_execs: stop after this many commands.
        :param limits: ``{"memory": "256M", "cpus": 0.5, "pids": 64, "disk": "128M"}``.
        :param env: variables the profile's ``environment.pass`` list allows.
        :param persist: keep the workspace (sealed) after the sandbox.
        :param workspace: start from a persisted workspace (id or object).
        :raises Forbidden: an override would loosen the profile (the detail
            names the profile's value).
        """
        body: Dict[str, Any] = {}
        if profile is not None:
            body["profile"] = profile
        if labels is not None:
            body["labels"] = {str(k): str(v) for k, v in labels.items()}
        if ttl is not None:
            body["ttl"] = _duration(ttl)
        if idle_timeout is not None:
            body["idle_timeout"] = _duration(idle_timeout)
        if max_execs is not None:
            body["max_execs"] = max_execs
        if limits is not None:
            body["limits"] = dict(limits)
        if env is not None:
            body["env"] = {str(k): str(v) for k, v in env.items()}
        if persist is not None:
            body["persist"] = bool(persist)
        if workspace is not None:
            body["workspace"] = _id(workspace)
        data = self._transport.request("POST", "/v1/sandboxes", json_body=body).json()
        return Sandbox.from_json(_obj(data), self)

    @contextmanager
    def sandbox(
        self,
        profile: Optional[str] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        ttl: Optional[Duration] = None,
        idle_timeout: Optional[Duration] = None,
        max_execs: Optional[int] = None,
        limits: Optional[Mapping[str, Any]] = None,
        env: Optional[Mapping[str, str]] = None,
        persist: Optional[bool] = None,
        workspace: Optional[Union[str, Workspace]] = None,
    ) -> Iterator[Sandbox]:
        """Create a sandbox for a ``with`` block and delete it afterwards.

        Takes the arguments of :meth:`create_sandbox`. On exit the sandbox is
        deleted; a sandbox already gone (404) or stopped (409) is fine. When
        the block raised, a failure to delete does not hide its exception.
        """
        sb = self.create_sandbox(
            profile,
            labels=labels,
            ttl=ttl,
            idle_timeout=idle_timeout,
            max_execs=max_execs,
            limits=limits,
            env=env,
            persist=persist,
            workspace=workspace,
        )
        try:
            yield sb
        except BaseException:
            try:
                sb.delete()
            except AirlockError:
                pass
            raise
        try:
            sb.delete()
        except (NotFound, Conflict):
            pass

    def get_sandbox(self, sandbox_id: str) -> Sandbox:
        """One sandbox by id (``sbx-...``); :class:`~airlock.NotFound` if unknown."""
        data = self._get(f"/v1/sandboxes/{quote(sandbox_id, safe='')}")
        return Sandbox.from_json(_obj(data), self)

    def list_sandboxes(
        self,
        state: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> List[Sandbox]:
        """Sandboxes, optionally only those in ``state`` (``"running"``,
        ``"frozen"``, ``"stopped"``) carrying every label in ``labels``."""
        query: List[Tuple[str, str]] = []
        if state is not None:
            query.append(("state", state))
        for key, value in (labels or {}).items():
            query.append(("label", f"{key}={value}"))
        data = self._get("/v1/sandboxes", query or None)
        return [Sandbox.from_json(s, self) for s in _items(data, "sandboxes")]

    def kill(
        self,
        *,
        instance: Optional[Union[str, Sandbox]] = None,
        session: Optional[str] = None,
        workflow: Optional[str] = None,
        selector: Optional[Mapping[str, str]] = None,
        all: bool = False,
        reason: Optional[str] = None,
    ) -> KillResult:
        """Stop sandboxes, chosen by exactly one of:

        - ``instance``: one sandbox (id or :class:`Sandbox`);
        - ``session`` / ``workflow``: every sandbox with that label;
        - ``selector``: every sandbox carrying all these labels;
        - ``all=True``: every sandbox (the global kill switch, admin only).

        Their ``stop_reason`` is ``reason`` when given, else ``"killed"``.
        Returns the ids stopped and their count.
        """
        chosen: Dict[str, Any] = {}
        if instance is not None:
            chosen["instance"] = _id(instance)
        if session is not None:
            chosen["session"] = session
        if workflow is not None:
            chosen["workflow"] = workflow
        if selector is not None:
            chosen["selector"] = {str(k): str(v) for k, v in selector.items()}
        if all:
            chosen["all"] = True
        if len(chosen) != 1:
            raise ValueError(
                "kill() takes exactly one of instance=, session=, workflow=, selector= or all=True"
            )
        if reason is not None:
            chosen["reason"] = reason
        data = self._transport.request("POST", "/v1/kill", json_body=chosen).json()
        return KillResult.from_json(_obj(data))


class Tokens:
    """API tokens (admin): ``client.tokens``."""

    def __init__(self, client: Airlock) -> None:
        self._client = client

    def create(self, role: str, ttl: Duration, name: Optional[str] = None) -> NewToken:
        """Create a token with ``role`` (``viewer``, ``operator``, ``admin``).

        ``ttl`` (``"30d"``, seconds, a ``timedelta``) is at most 365 days. The
        secret (``.token``) is returned only now; the daemon keeps only its hash.
        """
        body: Dict[str, Any] = {"role": role, "ttl": _duration(ttl)}
        if name is not None:
            body["name"] = name
        data = self._client._transport.request("POST", "/v1/tokens", json_body=body).json()
        return NewToken.from_json(_obj(data))

    def list(self) -> List[TokenInfo]:
        """Every token, revoked ones included (never the secrets)."""
        return [TokenInfo.from_json(t) for t in _items(self._client._get("/v1/tokens"), "tokens")]

    def revoke(self, token_id: Union[str, TokenInfo, NewToken]) -> None:
        """Revoke a token by id (``alk_<id>_...``'s id part, or a token object)."""
        self._client._transport.request("DELETE", f"/v1/tokens/{quote(_id(token_id), safe='')}")


class Snapshots:
    """Snapshots recorded by containment: ``client.snapshots``."""

    def __init__(self, client: Airlock) -> None:
        self._client = client

    def list(self) -> List[Snapshot]:
        return [Snapshot.from_json(s) for s in _items(self._client._get("/v1/snapshots"), "snapshots")]

    def get(self, snapshot_id: str) -> Snapshot:
        return Snapshot.from_json(_obj(self._client._get(f"/v1/snapshots/{quote(snapshot_id, safe='')}")))

    def download(self, snapshot_id: Union[str, Snapshot]) -> bytes:
        """The decrypted tar of the workspace at containment (admin).

        Its content came from a contained (suspect) sandbox: extract it with
        ``tarfile``'s ``filter="data"``, preferably somewhere disposable.
        """
        transport = self._client._transport
        timeout = transport.timeout
        resp = transport.request(
            "GET",
            f"/v1/snapshots/{quote(_id(snapshot_id), safe='')}/archive",
            accept="application/x-tar",
            timeout=None if timeout is None else max(timeout, 300.0),
        )
        return resp.body

    def delete(self, snapshot_id: Union[str, Snapshot]) -> None:
        """Erase a snapshot (its key is destroyed; admin)."""
        self._client._transport.request("DELETE", f"/v1/snapshots/{quote(_id(snapshot_id), safe='')}")


class Workspaces:
    """Persisted (sealed) workspaces: ``client.workspaces``."""

    def __init__(self, client: Airlock) -> None:
        self._client = client

    def list(self) -> List[Workspace]:
        return [Workspace.from_json(w) for w in _items(self._client._get("/v1/workspaces"), "workspaces")]

    def delete(self, workspace_id: Union[str, Workspace]) -> None:
        """Erase a persisted workspace (its key is destroyed)."""
        self._client._transport.request("DELETE", f"/v1/workspaces/{quote(_id(workspace_id), safe='')}")
