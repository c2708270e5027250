"""Uplinks of edge devices, and how long an update takes to cross one.

A :class:`Link` is what a device sends its update over: BLE, Wi-Fi, LTE-M, NB-IoT or
LoRaWAN. Most links are described well enough by an effective application-level rate and a
fixed per-message setup time. LoRaWAN is not: a device sends frames of at most
``max_payload_bytes`` application bytes, each costs the airtime of a LoRa packet, and the
regional duty cycle makes the device stay silent for ``airtime·(1/duty − 1)`` after every
frame. :func:`airtime` converts bytes to seconds for any link and says whether an update
stays within the link's limits (LoRaWAN fair use: about 2 KB per update, 30 s of uplink
airtime per day). The links themselves are data, in ``client/profiles.toml``; the link model
lives in the core because both sides use it: clients to plan, the server to account.

LoRa packet airtime (Semtech SX1276/77/78/79 datasheet rev. 7, §4.1.1.7, and Semtech
AN1200.13 "LoRa Modem Designer's Guide"), with ``SF`` the spreading factor, ``BW`` the
bandwidth, ``CR`` the coding rate index (1 for 4/5), ``PL`` the PHY payload in bytes
(application payload + 13 bytes of LoRaWAN MAC overhead: MHDR 1, FHDR 7, FPort 1, MIC 4),
explicit header, CRC on, and ``DE`` = 1 when a symbol lasts longer than 16 ms::

    T_sym      = 2^SF / BW
    T_preamble = (n_preamble + 4.25) · T_sym
    n_payload  = 8 + max(ceil((8·PL − 4·SF + 28 + 16) / (4·(SF − 2·DE))) · (CR + 4), 0)
    T_packet   = T_preamble + n_payload · T_sym

Golden: SF7, 125 kHz, 222 application bytes → PL 235 → 348 payload symbols → 368.896 ms
(the figure of The Things Network's airtime calculator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LinkKind = Literal["ble", "wifi", "lte-m", "nb-iot", "lorawan", "ethernet"]
LINK_KINDS: tuple[str, ...] = ("ble", "wifi", "lte-m", "nb-iot", "lorawan", "ethernet")


@dataclass(frozen=True)
class Link:
    """One uplink technology with its effective rate and limits.

    name:               key in ``profiles.toml`` (``ble``, ``lorawan-eu868-sf7``, ...)
    kind:               one of :data:`LINK_KINDS`
    rate_bps:           effective application throughput, bit/s (for LoRaWAN the nominal
                        PHY bit rate, shown only: its airtime comes from the packet formula)
    setup_s:            fixed cost per message (connection or radio-resource setup), s
    max_payload_bytes:  application bytes per frame (LoRaWAN: 222 at EU868 DR5); 0 = unlimited
    frame_overhead_bytes: MAC bytes added to every frame (LoRaWAN: 13)
    duty_cycle:         fraction of time the device may transmit (EU868 g1 sub-band: 0.01)
    update_limit_bytes: largest update the link's fair use allows; 0 = no limit
    daily_airtime_s:    uplink airtime allowed per day (TTN fair use: 30 s); 0 = no limit
    spreading_factor, bandwidth_hz, coding_rate, preamble_symbols: LoRa modulation
    """

    name: str
    kind: LinkKind
    rate_bps: float
    description: str = ""
    setup_s: float = 0.0
    max_payload_bytes: int = 0
    frame_overhead_bytes: int = 0
    duty_cycle: float = 1.0
    update_limit_bytes: int = 0
    daily_airtime_s: float = 0.0
    spreading_factor: int = 0
    bandwidth_hz: float = 0.0
    coding_rate: int = 1
    preamble_symbols: int = 8

    @property
    def is_lora(self) -> bool:
        return self.kind == "lorawan"

    def frame_airtime(self, payload_bytes: int) -> float:
        """Seconds one frame carrying ``payload_bytes`` application bytes is on the air."""
        if not self.is_lora:
            return payload_bytes * 8 / self.rate_bps
        sf, bw = self.spreading_factor, self.bandwidth_hz
        symbol = 2**sf / bw  # s
        low_rate = 1 if symbol > 0.016 else 0  # low-data-rate optimisation (SF11/12 at 125 kHz)
        phy = payload_bytes + self.frame_overhead_bytes
        blocks = math.ceil((8 * phy - 4 * sf + 28 + 16) / (4 * (sf - 2 * low_rate)))
        payload_symbols = 8 + max(blocks * (self.coding_rate + 4), 0)
        return (self.preamble_symbols + 4.25) * symbol + payload_symbols * symbol


def link_problem(link: Link) -> str | None:
    """What makes ``link`` unusable (a zero rate would divide airtime by zero), or None.
    Checked where a link enters: a profile file, and a node's handshake."""
    numbers = {f: getattr(link, f) for f in ("rate_bps", "setup_s", "duty_cycle", "daily_airtime_s", "bandwidth_hz")}
    counts = {f: getattr(link, f) for f in ("max_payload_bytes", "frame_overhead_bytes", "update_limit_bytes", "spreading_factor", "coding_rate", "preamble_symbols")}
    if link.kind not in LINK_KINDS:
        return f"kind={link.kind!r}; choose one of {', '.join(LINK_KINDS)}"
    for field, value in {**numbers, **counts}.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{field} must be a finite number, got {value!r}"
    for field, value in counts.items():
        if not float(value).is_integer():
            return f"{field} must be a whole number, got {value!r}"
    if link.rate_bps <= 0:
        return f"rate_bps must be > 0, got {link.rate_bps}"
    if not 0 < link.duty_cycle <= 1:
        return f"duty_cycle must be in (0, 1], got {link.duty_cycle}"
    if min(link.setup_s, link.max_payload_bytes, link.frame_overhead_bytes, link.update_limit_bytes, link.daily_airtime_s) < 0:
        return "setup_s, byte limits and daily_airtime_s must be ≥ 0"
    if link.is_lora:
        if not 6 <= link.spreading_factor <= 12 or link.bandwidth_hz <= 0 or not 1 <= link.coding_rate <= 4:
            return (
                "a lorawan link needs spreading_factor 6-12, bandwidth_hz > 0 and coding_rate 1-4 (4/5-4/8); "
                f"got {link.spreading_factor}, {link.bandwidth_hz}, {link.coding_rate}"
            )
        if link.max_payload_bytes <= 0:
            return "a lorawan link needs max_payload_bytes (222 at EU868 SF7)"
    return None


@dataclass(frozen=True)
class Airtime:
    """What sending ``bytes`` over ``link`` costs, and whether the link allows it.

    frames:    frames sent (1 unless the link limits the payload per frame)
    airtime_s: time the radio transmits
    wall_s:    time from the first frame until the last one is sent: setup, airtime, and
               the duty-cycle silences between frames
    fits:      within the link's per-update and daily limits
    reason:    why not, when it does not fit
    """

    link: str
    bytes: int
    frames: int
    airtime_s: float
    wall_s: float
    fits: bool
    reason: str | None = None


def frame_sizes(nbytes: int, link: Link) -> list[int]:
    """Application bytes of each frame an update of ``nbytes`` is cut into."""
    if link.max_payload_bytes <= 0 or nbytes <= link.max_payload_bytes:
        return [nbytes]
    full, rest = divmod(nbytes, link.max_payload_bytes)
    return [link.max_payload_bytes] * full + ([rest] if rest else [])


def airtime(nbytes: int, link: Link) -> Airtime:
    """Airtime and wall time of sending ``nbytes`` over ``link``, with the verdict.

    ``nbytes`` is what crosses the link: the serialized message, framing included (a Flower
    message adds about 1 KB to the raw payload).
    """
    if nbytes < 0:
        raise ValueError(f"bytes must be ≥ 0, got {nbytes}")
    frames = frame_sizes(nbytes, link)
    times = [link.frame_airtime(size) for size in frames]
    on_air = sum(times)
    # after each frame but the last, the duty cycle keeps the radio silent for t·(1/d − 1)
    silence = sum(times[:-1]) * (1 / link.duty_cycle - 1)
    wall = link.setup_s + on_air + silence
    reasons = []
    if link.update_limit_bytes and nbytes > link.update_limit_bytes:
        reasons.append(f"{nbytes:,} B exceed the {link.update_limit_bytes:,} B an update may take on {link.name} (fair use)")
    if link.daily_airtime_s and on_air > link.daily_airtime_s:
        reasons.append(f"{on_air:.1f} s of airtime exceed the {link.daily_airtime_s:g} s per day {link.name} allows")
    return Airtime(link.name, nbytes, len(frames), on_air, wall, not reasons, "; ".join(reasons) or None)
