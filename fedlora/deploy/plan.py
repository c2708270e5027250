"""Where everything lives, on the server and on each device: one validated description.

The commands and the systemd unit are derived from a :class:`Deployment` and check
nothing themselves; everything that would only fail later on a device (a SuperLink address
the certificate does not name, a SuperLink bound to loopback that devices must reach, a
device path that a systemd unit cannot hold) is refused here with the fix.

On a device, everything lives under one folder (default ``/opt/fedlora``)::

    /opt/fedlora/venv/              the virtual environment with fedlora[client]
    /opt/fedlora/ca.crt             the CA certificate (public)
    /opt/fedlora/NAME.key           this node's private key (mode 0600, owned by the service user)
    /opt/fedlora/NAME/state/        fedlora's client state (personal adapter, residuals)
    /opt/fedlora/NAME/cache/        fedlora's cache: the base received from the server
    /opt/fedlora/NAME/flwr-home/    Flower's FLWR_HOME: the ClientApp's installed FAB

Per-node folders cost nothing on a Pi that hosts one node and let one host run several.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fedlora.deploy import flower
from fedlora.deploy.addresses import Ip, format_host_port, is_loopback, parse_host, parse_host_port
from fedlora.deploy.certificates import TlsFiles, certificate_hosts
from fedlora.deploy.node_keys import NodeKey
from fedlora.errors import FedloraError

# A device path goes into a systemd ExecStart= line and a quoted --node-config value:
# characters that either would treat specially ($, %, quotes, backslash, spaces) are refused.
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._+/-]*$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_CONNECTION = re.compile(r"^[A-Za-z0-9_-]+$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# systemd looks commands up in this PATH; the venv comes first so `flower-superexec` is found
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def _device_path(text: str, option: str) -> PurePosixPath:
    if not _PLAIN_PATH.match(text) or "/../" in f"{text}/":
        raise FedloraError(
            f"{option} {text!r} must be an absolute path of letters, digits and . _ + - / only "
            "(it goes into a systemd unit and a quoted node config), e.g. /opt/fedlora"
        )
    return PurePosixPath(text)


@dataclass(frozen=True)
class DeviceLayout:
    """Where a SuperNode's files live on its device (see the module docstring)."""

    folder: PurePosixPath
    venv: PurePosixPath
    user: str
    profile: str | None = None  # the device profile every node declares (its planner's budget)

    @property
    def ca_cert(self) -> PurePosixPath:
        return self.folder / "ca.crt"

    def private_key(self, node: NodeKey) -> PurePosixPath:
        return self.folder / f"{node.name}.key"

    def state_dir(self, node: NodeKey) -> PurePosixPath:
        return self.folder / node.name / "state"

    def cache_dir(self, node: NodeKey) -> PurePosixPath:
        return self.folder / node.name / "cache"

    def flwr_home(self, node: NodeKey) -> PurePosixPath:
        return self.folder / node.name / "flwr-home"

    def program(self, name: str) -> PurePosixPath:
        return self.venv / "bin" / name

    @property
    def path(self) -> str:
        return f"{self.venv / 'bin'}:{SYSTEM_PATH}"


@dataclass(frozen=True)
class Deployment:
    """A SuperLink with TLS and SuperNode authentication, and one SuperNode per node key."""

    tls: TlsFiles
    nodes: list[NodeKey]  # every node of the key folder: node i's Runtime API port is first + i
    shown: list[NodeKey]  # the nodes to print commands for (--node), default all
    superlink_host: str | Ip  # as the SuperNodes and the flwr CLI dial it
    port: int
    bind_host: str | Ip  # the SuperLink's --host
    database: Path
    flwr_home: Path  # the flwr CLI's folder on the server (config.toml)
    connection: str  # the SuperLink connection's name in config.toml
    device: DeviceLayout
    first_runtime_port: int  # node i serves its ClientApp's Runtime API on first + i

    @property
    def superlink_address(self) -> str:
        return format_host_port(self.superlink_host, self.port)

    def runtime_port(self, node: NodeKey) -> int:
        return self.first_runtime_port + self.nodes.index(node)


def plan_deployment(
    tls: TlsFiles,
    nodes: list[NodeKey],
    superlink: str | None = None,
    bind: str | None = None,
    database: Path | None = None,
    flwr_home: Path | None = None,
    connection: str = "fedlora",
    device_dir: str = "/opt/fedlora",
    device_venv: str | None = None,
    device_user: str = "fedlora",
    profile: str | None = None,
    first_runtime_port: int | None = None,
    only: list[str] | None = None,
) -> Deployment:
    """Check every choice against the certificate, the keys and each other; see :class:`Deployment`.

    ``superlink`` defaults to the certificate's first host on the default port; ``bind`` to
    0.0.0.0 unless SuperNodes dial loopback; ``only`` keeps the named nodes.
    """
    names = certificate_hosts(tls.server_cert)
    if superlink is None:
        host, port = names[0], flower.SUPERLINK_PORT
    else:
        host, port = parse_host_port(superlink, "--superlink")
    if host not in names:
        raise FedloraError(
            f"--superlink {format_host_port(host, port)}: the server certificate in {tls.folder} is valid for "
            f"{', '.join(map(str, names))} only, so SuperNodes would refuse the connection; dial one of those, "
            f"or issue a new certificate with `fedlora deploy ca --address {host} --out NEW_FOLDER`"
        )
    bind_host = parse_host(bind, "--bind") if bind is not None else (host if is_loopback(host) else parse_host("0.0.0.0"))
    if is_loopback(bind_host) and not is_loopback(host):
        raise FedloraError(
            f"--bind {bind}: a SuperLink bound to loopback cannot be reached at {host} by the devices; "
            "bind 0.0.0.0 (all interfaces) or the server's address"
        )
    # The SuperLink starts its own flower-superexec against its bind address over TLS
    # (0.0.0.0 and :: become 127.0.0.1 and ::1): the certificate must name it too.
    if str(bind_host) not in ("0.0.0.0", "::") and bind_host not in names:
        raise FedloraError(
            f"--bind {bind}: the SuperLink's own flower-superexec connects to this address over TLS, and the certificate "
            f"names {', '.join(map(str, names))} only; bind 0.0.0.0 or one of those"
        )
    if not _CONNECTION.match(connection):
        raise FedloraError(f"--connection {connection!r}: use letters, digits, '-' and '_' only")
    if profile is not None and not _PROFILE.match(profile):  # it goes into a quoted node config
        raise FedloraError(f"--profile {profile!r}: name a built-in device profile, e.g. rpi-zero-2w-headless")
    if not _USER.match(device_user):
        raise FedloraError(f"--device-user {device_user!r} is not a valid Linux user name (e.g. fedlora)")
    folder = _device_path(device_dir, "--device-dir")
    venv = _device_path(device_venv, "--device-venv") if device_venv else folder / "venv"
    if only:
        unknown = sorted(set(only) - {node.name for node in nodes})
        if unknown:
            raise FedloraError(f"--node {', '.join(unknown)}: no such node; the keys are for {', '.join(n.name for n in nodes)}")
    if first_runtime_port is None:
        first_runtime_port = flower.SUPERNODE_RUNTIME_PORT
    if not 1024 <= first_runtime_port <= 65535 - len(nodes) + 1:
        raise FedloraError(f"--first-runtime-port {first_runtime_port}: the nodes need ports {first_runtime_port}.. within 1024..65535")
    home = Path(flwr_home or flower.DEFAULT_FLWR_HOME).expanduser().absolute()
    return Deployment(
        tls=tls,
        nodes=nodes,
        shown=[node for node in nodes if not only or node.name in only],
        superlink_host=host,
        port=port,
        bind_host=bind_host,
        database=Path(database).expanduser().absolute() if database else home / "superlink.db",
        flwr_home=home,
        connection=connection,
        device=DeviceLayout(folder, venv, device_user, profile),
        first_runtime_port=first_runtime_port,
    )
