"""Airlock: a Python client for the ``airlock serve`` control-plane API.

Standard library only. Quick start::

    from airlock import Airlock

    with Airlock() as client:            # the daemon's Unix socket by default
        with client.sandbox(profile="untrusted", ttl="5m",
                            labels={"workflow": "triage"}) as sb:
            sb.files.write("main.py", "print('hi')")
            result = sb.exec(["python3", "main.py"], timeout=30)
            print(result.stdout)

See :class:`Airlock` for where it connects, :class:`Sandbox` for what a sandbox
can do, :mod:`airlock.errors` for the exceptions, and :class:`AsyncAirlock` for
asyncio.
"""

from ._http import default_socket_path
from ._version import __version__
from .aio import AsyncAirlock, AsyncExecStream, AsyncSandbox, AsyncSandboxFiles
from .client import Airlock, Duration, Snapshots, Tokens, Workspaces
from .errors import (
    AirlockConnectionError,
    AirlockError,
    AirlockTimeout,
    BadRequest,
    Conflict,
    ExecError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    ServerError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)
from .models import (
    ExecChunk,
    ExecExit,
    ExecResult,
    FileInfo,
    Health,
    KillResult,
    Limits,
    NewToken,
    Profile,
    ProfileLimits,
    Remaining,
    Snapshot,
    SnapshotLink,
    SnapshotProcess,
    TokenInfo,
    Usage,
    WhoAmI,
    Workspace,
)
from .sandbox import Containment, ExecStream, Sandbox, SandboxFiles

__all__ = [
    "__version__",
    "default_socket_path",
    # clients
    "Airlock",
    "AsyncAirlock",
    "Tokens",
    "Snapshots",
    "Workspaces",
    "Duration",
    # sandboxes
    "Sandbox",
    "SandboxFiles",
    "ExecStream",
    "AsyncSandbox",
    "AsyncSandboxFiles",
    "AsyncExecStream",
    "Containment",
    # data
    "ExecChunk",
    "ExecExit",
    "ExecResult",
    "FileInfo",
    "Health",
    "KillResult",
    "Limits",
    "NewToken",
    "Profile",
    "ProfileLimits",
    "Remaining",
    "Snapshot",
    "SnapshotLink",
    "SnapshotProcess",
    "TokenInfo",
    "Usage",
    "WhoAmI",
    "Workspace",
    # errors
    "AirlockError",
    "BadRequest",
    "ValidationError",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "ServerError",
    "AirlockConnectionError",
    "AirlockTimeout",
    "ProtocolError",
    "ExecError",
]
