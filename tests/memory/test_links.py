"""Airtime of updates on each uplink, hand-checked against the LoRa packet formula.

LoRa, SF7 / 125 kHz / CR 4/5, explicit header, CRC on: T_sym = 2^7 / 125 kHz = 1.024 ms,
preamble (8 + 4.25)·T_sym = 12.544 ms, and with PL = application bytes + 13:
    n_payload = 8 + ceil((8·PL − 28 + 28 + 16) / 28) · 5
"""

import pytest

from fedlora.links import airtime, frame_sizes
from fedlora.client.profiles import load_link

SF7 = load_link("lorawan-eu868-sf7")


@pytest.mark.parametrize(
    "payload, symbols, seconds",
    [
        (222, 348, 0.368896),  # PL 235: ceil(1896/28) = 68 blocks → 8 + 340 symbols
        (50, 103, 0.118016),  # PL 63: ceil(520/28) = 19 → 8 + 95
        (10, 48, 0.061696),  # PL 23: ceil(200/28) = 8 → 8 + 40 (TTN's calculator: 61.7 ms)
    ],
)
def test_lora_frame_airtime(payload, symbols, seconds):
    assert symbols * 1.024e-3 + 12.544e-3 == pytest.approx(seconds)
    assert SF7.frame_airtime(payload) == pytest.approx(seconds, abs=1e-9)


def test_sf12_max_payload_takes_2_8_seconds():
    # T_sym = 32.768 ms, low-data-rate optimisation on: PL 64 → ceil(508/40) = 13 → 73 symbols
    assert load_link("lorawan-eu868-sf12").frame_airtime(51) == pytest.approx(73 * 0.032768 + 12.25 * 0.032768)


def test_a_2_kb_update_over_lorawan():
    sent = airtime(2048, SF7)
    assert frame_sizes(2048, SF7) == [222] * 9 + [50]
    assert sent.frames == 10
    assert sent.airtime_s == pytest.approx(9 * 0.368896 + 0.118016)  # 3.438 s on air
    # 1% duty cycle: after each of the first nine frames the radio stays silent 99× its airtime
    assert sent.wall_s == pytest.approx(3.43808 + 9 * 0.368896 * 99)  # 332.1 s
    assert sent.fits and sent.reason is None


def test_over_fair_use_is_refused_with_the_reason():
    sent = airtime(2049, SF7)
    assert not sent.fits
    assert "2,049 B exceed the 2,048 B an update may take on lorawan-eu868-sf7" in sent.reason
    big = airtime(20_000, SF7)  # 91 frames: about 33.5 s on air, over TTN's 30 s a day
    assert "s of airtime exceed the 30 s per day" in big.reason


def test_rate_based_links():
    assert airtime(2048, load_link("ble")).wall_s == pytest.approx(2048 * 8 / 700_000)
    lte = airtime(10_000, load_link("lte-m"))
    assert lte.wall_s == pytest.approx(1.0 + 10_000 * 8 / 375_000) and lte.frames == 1 and lte.fits
