"""Device profiles: the memory, flash and uplink of the real boards simulated clients mirror.

The boards and their links are data, in ``profiles.toml`` next to this file (with the
datasheets they come from). A profile is named by a spec, which is one of

- a built-in name: ``nrf52840``, ``esp32s3``, ``rpi4``, ... (:func:`profile_names`);
- a TOML file of your own boards in the same layout, ``boards.toml`` (when it holds one
  profile) or ``boards.toml#name``;
- an inline spec: ``name=myboard,base=nrf52840,ram=512KiB,uplink=lte-m`` — ``base``
  starts from a built-in profile, the other keys are the TOML fields.

Every profile is validated where it enters, with errors that name the source, the field,
the value and the fix; code behind :func:`load_profile` trusts it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fedlora.links import LINK_KINDS, Link, link_problem
from fedlora.errors import FedloraError

BUILTIN_FILE = Path(__file__).with_name("profiles.toml")

ProfileKind = Literal["mcu", "linux"]
PROFILE_KINDS: tuple[str, ...] = ("mcu", "linux")

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3}  # fmt: skip


@dataclass(frozen=True)
class DeviceProfile:
    """One board. Sizes are bytes; ``usable_ram`` is what one training step may use.

    ``ram_reserve`` is what the board keeps for itself (RTOS or OS, radio, GPU);
    ``process_footprint`` is what the fedlora client's own process holds before it trains
    (on Linux: Python, torch, flwr and the SuperNode in ``fedlora-node``, measured by
    ``simulations/bench_node.py``). The node as a whole must stay within ``node_budget``.
    """

    name: str
    kind: ProfileKind
    ram: int
    ram_reserve: int
    uplink: Link
    description: str = ""
    cpu: str = ""
    clock_mhz: float = 0.0
    psram: int = 0
    flash: int = 0
    flash_reserve: int = 0
    weights_in_flash: bool = False
    process_footprint: int = 0

    @property
    def usable_ram(self) -> int:
        """RAM (with PSRAM) left for the training step after the board's reserve and the
        client process's own footprint."""
        return self.node_budget - self.process_footprint

    @property
    def node_budget(self) -> int:
        """RAM (with PSRAM) the whole client may use: everything but the board's reserve."""
        return self.ram + self.psram - self.ram_reserve

    @property
    def usable_flash(self) -> int:
        """Flash left for the frozen base after the firmware (0 when weights are not in flash)."""
        return self.flash - self.flash_reserve if self.weights_in_flash else 0

    @property
    def total_ram(self) -> int:
        return self.ram + self.psram

    def describe(self) -> str:
        ram = format_bytes(self.ram) + (f" + {format_bytes(self.psram)} PSRAM" if self.psram else "")
        flash = f"{format_bytes(self.flash)} flash" if self.flash else "no flash for weights"
        return f"{self.name}: {ram} RAM ({format_bytes(self.usable_ram)} usable), {flash}, {self.uplink.name}"


# -- sizes -------------------------------------------------------------------------------


def parse_size(value: Any, what: str) -> int:
    """Bytes from an int or a string like ``"256 KiB"``, ``"1MB"``, ``"4 GiB"`` (binary units)."""
    if isinstance(value, bool):
        raise FedloraError(f"{what} must be a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise FedloraError(f"{what} must be ≥ 0 bytes, got {value}")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise FedloraError(f"{what}={value!r} is not a size; write bytes (262144) or a number with a unit ('256 KiB', '1 MiB', '4 GiB')")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_bytes(n: float) -> str:
    """``n`` bytes in KiB/MiB/GiB with one decimal (bytes below 1 KiB)."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# -- validation of tables from TOML files and inline specs --------------------------------

_PROFILE_FIELDS = {f.name for f in fields(DeviceProfile)} - {"name"}
_SIZE_FIELDS = ("ram", "ram_reserve", "psram", "flash", "flash_reserve", "process_footprint")
_LINK_FIELDS = {f.name for f in fields(Link)} - {"name"}


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise FedloraError(f"{what} must be true or false, got {value!r}")


def _number(value: Any, what: str, kind: type = float) -> float | int:
    if isinstance(value, bool):
        raise FedloraError(f"{what} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise FedloraError(f"{what} must be a number, got {value!r}") from None
    if kind is int and float(value) != number:
        raise FedloraError(f"{what} must be a whole number, got {value!r}")
    return number


def _unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise FedloraError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; known fields: {', '.join(sorted(known))}")


def link_from_table(name: str, table: dict[str, Any], where: str) -> Link:
    """A validated :class:`Link` from a ``[links.<name>]`` table."""
    where = f"{where}: link {name!r}"
    _unknown(table, _LINK_FIELDS, where)
    kind = table.get("kind")
    if kind not in LINK_KINDS:
        raise FedloraError(f"{where}: kind={kind!r}; choose one of {', '.join(LINK_KINDS)}")
    if "rate_bps" not in table:
        raise FedloraError(f"{where}: rate_bps (effective bit/s) is missing")
    values: dict[str, Any] = {"kind": kind, "description": str(table.get("description", ""))}
    for key in ("rate_bps", "setup_s", "duty_cycle", "daily_airtime_s", "bandwidth_hz"):
        if key in table:
            values[key] = _number(table[key], f"{where}: {key}")
    for key in ("max_payload_bytes", "frame_overhead_bytes", "update_limit_bytes", "spreading_factor", "coding_rate", "preamble_symbols"):
        if key in table:
            values[key] = _number(table[key], f"{where}: {key}", int)
    link = Link(name=name, **values)
    problem = link_problem(link)
    if problem is not None:
        raise FedloraError(f"{where}: {problem}")
    return link


def profile_from_table(name: str, table: dict[str, Any], links: dict[str, Link], where: str, base: DeviceProfile | None = None) -> DeviceProfile:
    """A validated :class:`DeviceProfile` from a ``[profiles.<name>]`` table (or inline
    spec), optionally starting from ``base``."""
    where = f"{where}: profile {name!r}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise FedloraError(f"{where}: a profile name uses letters, digits, '-', '_' and '.', and starts with a letter or digit")
    _unknown(table, _PROFILE_FIELDS, where)
    values: dict[str, Any] = {} if base is None else {f.name: getattr(base, f.name) for f in fields(DeviceProfile) if f.name != "name"}
    missing = [key for key in ("kind", "ram", "ram_reserve", "uplink") if key not in table and key not in values]
    if missing:
        raise FedloraError(f"{where}: missing {', '.join(missing)}")
    for key, value in table.items():
        if key in _SIZE_FIELDS:
            values[key] = parse_size(value, f"{where}: {key}")
        elif key == "clock_mhz":
            values[key] = _number(value, f"{where}: clock_mhz")
        elif key == "weights_in_flash":
            values[key] = _bool(value, f"{where}: weights_in_flash")
        elif key == "uplink":
            if value not in links:
                raise FedloraError(f"{where}: uplink {value!r} is not a known link; known links: {', '.join(sorted(links))}")
            values[key] = links[value]
        else:
            values[key] = str(value)
    profile = DeviceProfile(name=name, **values)
    if profile.kind not in PROFILE_KINDS:
        raise FedloraError(f"{where}: kind={profile.kind!r}; choose 'mcu' (firmware, INT8 base) or 'linux' (the torch client)")
    if profile.ram <= 0:
        raise FedloraError(f"{where}: ram must be > 0")
    if profile.ram_reserve >= profile.total_ram:
        raise FedloraError(
            f"{where}: ram_reserve {format_bytes(profile.ram_reserve)} leaves nothing of {format_bytes(profile.total_ram)} RAM; "
            "lower ram_reserve"
        )
    # A process_footprint that leaves nothing is a measured fact, not a typo: the planner
    # refuses such a board and says what took its memory.
    if profile.flash_reserve > profile.flash:
        raise FedloraError(f"{where}: flash_reserve {format_bytes(profile.flash_reserve)} is larger than flash {format_bytes(profile.flash)}")
    if profile.weights_in_flash and profile.usable_flash <= 0:
        raise FedloraError(f"{where}: weights_in_flash = true, but no flash is left after flash_reserve; set flash or weights_in_flash = false")
    return profile


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FedloraError(f"profile file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FedloraError(f"profile file {path} is not valid TOML: {exc}") from exc


def _parse_file(path: Path, links: dict[str, Link]) -> tuple[dict[str, DeviceProfile], dict[str, Link]]:
    data = _read_toml(path)
    _unknown(data, {"links", "profiles"}, str(path))
    links = dict(links)
    for name, table in data.get("links", {}).items():
        if not isinstance(table, dict):
            raise FedloraError(f"{path}: links.{name} must be a table")
        links[name] = link_from_table(name, table, str(path))
    profiles = {}
    for name, table in data.get("profiles", {}).items():
        if not isinstance(table, dict):
            raise FedloraError(f"{path}: profiles.{name} must be a table")
        profiles[name] = profile_from_table(name, table, links, str(path))
    return profiles, links


@lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, DeviceProfile], dict[str, Link]]:
    return _parse_file(BUILTIN_FILE, {})


def builtin_profiles() -> dict[str, DeviceProfile]:
    return dict(_builtin()[0])


def profile_names() -> list[str]:
    return list(_builtin()[0])


def load_link(name: str) -> Link:
    links = _builtin()[1]
    if name not in links:
        raise FedloraError(f"unknown link {name!r}; known links: {', '.join(links)}")
    return links[name]


def load_profiles_file(path: str | Path) -> dict[str, DeviceProfile]:
    """Every profile of a TOML file in the ``profiles.toml`` layout (its links may use the
    built-in links and add their own)."""
    return _parse_file(Path(path).expanduser(), _builtin()[1])[0]


def _inline(spec: str) -> DeviceProfile:
    table: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise FedloraError(f"profile spec {spec!r}: {item.strip()!r} is not key=value; e.g. 'name=myboard,base=nrf52840,ram=512KiB'")
        if key in table:
            raise FedloraError(f"profile spec {spec!r} gives {key!r} twice")
        table[key] = value
    name = table.pop("name", None)
    if not name:
        raise FedloraError(f"profile spec {spec!r} has no name=...; e.g. 'name=myboard,base=nrf52840,ram=512KiB'")
    base_name = table.pop("base", None)
    base = None if base_name is None else load_profile(base_name)
    return profile_from_table(name, table, _builtin()[1], "profile spec", base)


def load_profile(spec: str | DeviceProfile) -> DeviceProfile:
    """The profile a spec names: built-in name, ``file.toml[#name]``, or inline ``name=...``."""
    if isinstance(spec, DeviceProfile):
        return spec
    spec = spec.strip()
    if "=" in spec:
        return _inline(spec)
    path_part, _, wanted = spec.partition("#")
    if path_part.endswith(".toml") or Path(path_part).expanduser().is_file():
        profiles = load_profiles_file(path_part)
        if wanted:
            if wanted not in profiles:
                raise FedloraError(f"{path_part} has no profile {wanted!r}; it has: {', '.join(profiles) or '(none)'}")
            return profiles[wanted]
        if len(profiles) != 1:
            raise FedloraError(
                f"{path_part} holds {len(profiles)} profiles ({', '.join(profiles) or 'none'}); name one as {path_part}#NAME"
            )
        return next(iter(profiles.values()))
    builtin = _builtin()[0]
    if spec not in builtin:
        raise FedloraError(
            f"unknown device profile {spec!r}; built-in profiles: {', '.join(builtin)}. Add your own with a TOML file "
            "(boards.toml#name, same layout as fedlora/client/profiles.toml) or inline: 'name=myboard,base=nrf52840,ram=512KiB'"
        )
    return builtin[spec]
