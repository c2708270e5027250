"""Host names, IP addresses and ``host:port`` as a user types them, checked where they enter.

A certificate names the hosts it is valid for, and a SuperNode dials ``host:port``: a typo
here surfaces much later as a TLS handshake failure on a device, so refuse it now.
"""

from __future__ import annotations

import ipaddress
import re

from fedlora.errors import FedloraError

# RFC 1123: letters, digits and hyphens, 1–63 per label, no hyphen at either end.
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_host(text: str, option: str = "--address") -> str | Ip:
    """An IP address, or a DNS host name; anything else raises a FedloraError naming ``option``."""
    value = text.strip()
    try:
        return ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    labels = value.split(".")
    if not value or len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        raise FedloraError(
            f"{option} {text!r} is neither an IP address nor a host name (letters, digits, hyphens "
            "and dots; no scheme, port or path). Give e.g. 192.168.1.10 or superlink.lan."
        )
    if labels[-1].isdigit():
        # no top-level domain is all digits: this is a mistyped IPv4 address
        raise FedloraError(f"{option} {text!r} is not a valid IP address (each part is 0..255)")
    return value.lower()


def parse_host_port(text: str, option: str) -> tuple[str | Ip, int]:
    """``host:port`` or ``[ipv6]:port``; the port is required."""
    value = text.strip()
    if "://" in value:
        raise FedloraError(f"{option} {text!r}: give host:port without a scheme, e.g. 192.168.1.10:8000")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
        if ":" in host:
            raise FedloraError(f"{option} {text!r}: write an IPv6 address in brackets, e.g. [fd00::1]:8000")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise FedloraError(f"{option} {text!r} needs a port 1..65535, as host:port, e.g. 192.168.1.10:8000")
    return parse_host(host, option), int(port)


def format_host_port(host: str | Ip, port: int) -> str:
    """The inverse of :func:`parse_host_port` (IPv6 in brackets)."""
    return f"[{host}]:{port}" if isinstance(host, ipaddress.IPv6Address) else f"{host}:{port}"


def is_loopback(host: str | Ip) -> bool:
    return host == "localhost" if isinstance(host, str) else host.is_loopback
