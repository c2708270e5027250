"""The Flower facts fedlora.deploy.flower writes down hold for the installed Flower."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fedlora.deploy import flower

pytest.importorskip("flwr")


def test_ports_and_default_host():
    from flwr.supercore import constant

    assert constant.SUPERLINK_UVICORN_DEFAULT_PORT == flower.SUPERLINK_PORT
    assert constant.UVICORN_DEFAULT_HOST == flower.SUPERLINK_DEFAULT_HOST
    assert constant.SUPERNODE_UVICORN_DEFAULT_PORT == flower.SUPERNODE_RUNTIME_PORT


def test_the_superlink_binds_loopback_and_installs_dependencies_unless_told(monkeypatch):
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink

    monkeypatch.delenv("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", raising=False)
    defaults = _parse_args_run_superlink().parse_args([])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8000)
    assert defaults.runtime_dependency_install is True  # hence --disable-runtime-dependency-installation


def test_the_restart_delay_outlasts_the_heartbeat_timeout():
    from flwr.common import constant

    assert (constant.HEARTBEAT_DEFAULT_INTERVAL, constant.HEARTBEAT_PATIENCE) == (flower.HEARTBEAT_INTERVAL_S, flower.HEARTBEAT_PATIENCE)
    assert flower.RESTART_DELAY_S > constant.HEARTBEAT_PATIENCE * constant.HEARTBEAT_DEFAULT_INTERVAL


def test_node_keys_curve_and_config_keys():
    from flwr.cli.constant import FLOWER_CONFIG_FILE, SuperLinkConnectionTomlKey
    from flwr.supercore.primitives.asymmetric import uses_nist_ec_curve

    from fedlora.deploy.node_keys import CURVE

    assert CURVE.name == flower.NODE_KEY_CURVE
    assert uses_nist_ec_curve(ec.generate_private_key(CURVE()).public_key())
    assert (SuperLinkConnectionTomlKey.ADDRESS, SuperLinkConnectionTomlKey.ROOT_CERTIFICATES) == ("address", "root-certificates")
    assert FLOWER_CONFIG_FILE == flower.CONFIG_FILE
