"""A mixed fleet: each client trains the plan its device fits; flexlora aggregates them."""

import pytest

from fedlora.errors import FedloraError
from fedlora.settings import FederationSettings
from fedlora.simulations.simulate import simulate

FLEET = "nrf52840:2,rpi4:2,stm32wl55:1"


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    settings = FederationSettings(
        task="textlm", clients=5, rounds=2, fraction=1.0, method="flexlora", fleet=FLEET, wire="int8",
        local_steps=3, batch_size=16, pretrain_steps=30, heal_steps=5, seed=0,
        out=str(root / "out"), cache_dir=str(root / "cache"),
    )  # fmt: skip
    return simulate(settings, cpus=2)


@pytest.mark.e2e
def test_clients_train_different_ranks_and_depths(fleet_run):
    plans = {plan["client"]: plan for plan in fleet_run["plans"]}
    by_profile = {}
    for plan in plans.values():
        by_profile.setdefault(plan["profile"], set()).add((plan["rank"], plan["targets"]))
    assert set(by_profile) == {"nrf52840", "rpi4"}
    (nrf,), (pi,) = by_profile["nrf52840"], by_profile["rpi4"]
    assert nrf[0] < pi[0], "the 256 KB board trains a smaller rank"
    assert nrf[1] != pi[1], "and fewer layers"
    assert fleet_run["final"]["accepted"] == 4


@pytest.mark.e2e
def test_a_device_that_fits_no_plan_is_excluded_by_name_and_reason(fleet_run):
    (excluded,) = fleet_run["excluded"]
    assert excluded["profile"] == "stm32wl55" and excluded["client"].startswith("stdlib:")
    assert "nothing fits stm32wl55" in excluded["reason"] and "largest component" in excluded["reason"]


@pytest.mark.e2e
def test_updates_are_converted_to_time_on_each_link(fleet_run):
    devices = fleet_run["devices"]
    assert devices["nrf52840"]["link"] == "ble" and devices["rpi4"]["link"] == "wifi"
    assert devices["nrf52840"]["up_bytes_mean"] < devices["rpi4"]["up_bytes_mean"]
    assert all(d["up_airtime_s_mean"] > 0 and d["clients_over_limits"] == [] for d in devices.values())


def test_a_fleet_needs_the_heterogeneous_rank_method():
    with pytest.raises(FedloraError, match="use --method flexlora"):
        FederationSettings(method="fedit", fleet="mcu")


def test_fleet_assignment_is_proportional_and_deterministic():
    from fedlora.client.fleet import fleet_assignment

    devices = fleet_assignment("nrf52840:40,esp32s3:40,rpi4:20", 10, 0)
    assert sorted(devices) == ["esp32s3"] * 4 + ["nrf52840"] * 4 + ["rpi4"] * 2
    assert devices == fleet_assignment("nrf52840:40,esp32s3:40,rpi4:20", 10, 0)
    assert devices != fleet_assignment("nrf52840:40,esp32s3:40,rpi4:20", 10, 1)
    assert set(fleet_assignment("mixed", 5, 0)) == {"nrf52840", "esp32s3", "rpi-zero-2w-headless", "rpi4", "rpi5"}


@pytest.mark.parametrize("spec, message", [("nope:1", "nope"), ("rpi4:-1", "positive weight"), ("", "names no device")])
def test_bad_fleets_are_refused(spec, message):
    from fedlora.client.fleet import parse_fleet

    with pytest.raises(FedloraError, match=message):
        parse_fleet(spec)
