"""Device profiles: the built-in boards, user profiles, and validation with clear errors."""

import pytest

from fedlora.client.profiles import builtin_profiles, load_profile, parse_size
from fedlora.errors import FedloraError

KiB, MiB, GiB = 1024, 1024**2, 1024**3


def test_builtin_boards_match_their_datasheets():
    profiles = builtin_profiles()
    expected = {  # name: (RAM, flash) from the datasheets cited in profiles.toml
        "nrf52840": (256 * KiB, 1 * MiB),
        "stm32f746": (320 * KiB, 1 * MiB),
        "esp32s3": (512 * KiB, 8 * MiB),
        "rp2040": (264 * KiB, 2 * MiB),
        "rpi-zero-2w": (512 * MiB, 0),
        "rpi4": (4 * GiB, 0),
        "rpi5": (8 * GiB, 0),
    }
    for name, (ram, flash) in expected.items():
        assert (profiles[name].ram, profiles[name].flash) == (ram, flash), name
    assert profiles["nrf52840"].uplink.kind == "ble"
    assert profiles["stm32f746"].uplink.kind == "lorawan"
    assert profiles["nrf9160"].uplink.kind == "lte-m"
    assert {p.uplink.kind for p in profiles.values()} >= {"ble", "wifi", "lte-m", "lorawan"}
    for p in profiles.values():
        assert 0 < p.node_budget < p.total_ram and p.usable_ram < p.total_ram
        assert p.weights_in_flash == (p.kind == "mcu")


def test_a_linux_board_counts_the_client_process():
    zero = load_profile("rpi-zero-2w")
    assert zero.node_budget == 512 * MiB - 144 * MiB  # what the whole fedlora-node may use
    assert zero.usable_ram == zero.node_budget - zero.process_footprint
    assert zero.process_footprint > 300 * MiB  # torch, flwr and the SuperNode: not the 7 MiB of tensors
    headless = load_profile("rpi-zero-2w-headless")
    assert headless.node_budget == zero.node_budget + 48 * MiB  # gpu_mem=16
    assert zero.usable_ram < 0 < headless.usable_ram


def test_a_board_whose_client_process_takes_all_its_memory_is_refused_with_the_reason():
    from fedlora.client.device_plan import plan_for
    from fedlora.client.plan_search import PlanRefused
    from fedlora.settings import FederationSettings

    with pytest.raises(PlanRefused, match=r"nothing fits rpi-zero-2w: the client process alone \(Python, torch, flwr: 391.0 MiB.* more than the 368.0 MiB left"):
        plan_for(load_profile("rpi-zero-2w"), FederationSettings(task="textlm", clients=2))


def test_usable_memory_subtracts_the_reserves():
    p = load_profile("nrf52840")
    assert p.usable_ram == 256 * KiB - 56 * KiB
    assert p.usable_flash == 1 * MiB - 256 * KiB
    assert load_profile("esp32s3-psram").usable_ram == 512 * KiB + 8 * MiB - 208 * KiB


@pytest.mark.parametrize(
    "text, expected",
    [(262144, 262144), ("256 KiB", 262144), ("256KB", 262144), ("1 MiB", MiB), ("1.5M", 3 * MiB // 2), ("4 GiB", 4 * GiB), ("12 B", 12)],
)
def test_sizes_use_binary_units(text, expected):
    assert parse_size(text, "ram") == expected


def test_inline_profile_starts_from_a_base():
    p = load_profile("name=mine,base=nrf52840,ram=512KiB,uplink=lte-m")
    assert (p.name, p.ram, p.ram_reserve, p.flash, p.uplink.name) == ("mine", 512 * KiB, 56 * KiB, MiB, "lte-m")
    full = load_profile("name=x,kind=linux,ram=2GiB,ram_reserve=512MiB,uplink=wifi")
    assert full.usable_ram == 1536 * MiB and not full.weights_in_flash


def test_profile_file_with_its_own_link(tmp_path):
    path = tmp_path / "boards.toml"
    path.write_text(
        '[links.lora-sf9]\nkind = "lorawan"\nrate_bps = 1760\nspreading_factor = 9\nbandwidth_hz = 125000\nmax_payload_bytes = 115\n'
        'frame_overhead_bytes = 13\nduty_cycle = 0.01\n\n'
        '[profiles.a]\nkind = "mcu"\nram = "128 KiB"\nram_reserve = "16 KiB"\nflash = "512 KiB"\nweights_in_flash = true\nuplink = "lora-sf9"\n\n'
        '[profiles.b]\nkind = "linux"\nram = "1 GiB"\nram_reserve = "256 MiB"\nuplink = "wifi"\n'
    )
    assert load_profile(f"{path}#a").uplink.spreading_factor == 9
    assert load_profile(f"{path}#b").kind == "linux"
    with pytest.raises(FedloraError, match=r"holds 2 profiles \(a, b\); name one as .*#NAME"):
        load_profile(str(path))
    with pytest.raises(FedloraError, match="has no profile 'c'; it has: a, b"):
        load_profile(f"{path}#c")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nrf5284", r"unknown device profile 'nrf5284'; built-in profiles: nrf52840, .*name=myboard"),
        ("name=x,ram=1KiB", r"profile 'x': missing kind, ram_reserve, uplink"),
        ("name=x,base=nrf52840,ram=1 KQ", r"ram='1 KQ' is not a size; write bytes .* or a number with a unit"),
        ("name=x,base=nrf52840,rma=3", r"unknown field 'rma'; known fields: .*ram_reserve"),
        ("name=x,base=nrf52840,ram_reserve=300KiB", r"ram_reserve 300.0 KiB leaves nothing of 256.0 KiB RAM"),
        ("name=x,base=nrf52840,uplink=zigbee", r"uplink 'zigbee' is not a known link; known links: .*lorawan-eu868-sf7"),
        ("name=x,base=nrf52840,kind=fpga", r"kind='fpga'; choose 'mcu' .* or 'linux'"),
        ("name=x,base=nrf52840,weights_in_flash=maybe", r"weights_in_flash must be true or false, got 'maybe'"),
        ("name=x,base=nrf52840,flash_reserve=2MiB", r"flash_reserve 2.0 MiB is larger than flash 1.0 MiB"),
        ("base=nrf52840,ram=1MiB", r"has no name=\.\.\."),
        ("name=x,ram", r"'ram' is not key=value"),
        ("missing.toml", r"profile file missing.toml does not exist"),
    ],
)
def test_bad_profiles_are_refused_with_the_field_and_the_fix(spec, message):
    with pytest.raises(FedloraError, match=message):
        load_profile(spec)


def test_bad_links_in_a_file_are_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[links.l]\nkind = "lorawan"\nrate_bps = 5470\n\n[profiles.p]\nkind = "mcu"\nram = 1024\nram_reserve = 0\nuplink = "l"\n')
    with pytest.raises(FedloraError, match="a lorawan link needs spreading_factor 6-12"):
        load_profile(str(path))
    path.write_text("[profiles.p\n")
    with pytest.raises(FedloraError, match="is not valid TOML"):
        load_profile(str(path))
