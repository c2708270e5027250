"""What the deployment relies on from Flower 1.42, with where each fact lives in its source.

Flower is not imported here (a server may prepare a deployment before installing it);
``tests/deploy/test_flower_facts.py`` checks every value against the installed flwr.
Paths are relative to the installed ``flwr`` package.
"""

# One HTTP(S) port serves the SuperLink's Fleet, Control and Runtime APIs
# (superlink/cli/flower_superlink.py: `--host`, `--port`; supercore/constant.py:
# UVICORN_DEFAULT_HOST = "127.0.0.1", SUPERLINK_UVICORN_DEFAULT_PORT = 8000). The default
# host is loopback only: devices reach the SuperLink only if it binds another address.
SUPERLINK_PORT = 8000
SUPERLINK_DEFAULT_HOST = "127.0.0.1"

# A SuperNode serves its own Runtime API (the ClientApp's) on `--port`, default 9094
# (supercore/constant.py: SUPERNODE_UVICORN_DEFAULT_PORT). Two SuperNodes on one host need
# two ports.
SUPERNODE_RUNTIME_PORT = 9094

# A node is online until its last heartbeat plus HEARTBEAT_PATIENCE × the interval it
# announced (server/superlink/linkstate/in_memory_linkstate.py: activate_node,
# acknowledge_node_heartbeat); SuperNodes announce HEARTBEAT_DEFAULT_INTERVAL
# (supernode/fleet_http_connection.py; both constants in common/constant.py). Until then
# the SuperLink refuses to activate the same key again ("Failed to activate SuperNode"),
# so a node restarted after a crash must wait this long.
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_PATIENCE = 2
NODE_OFFLINE_AFTER_S = HEARTBEAT_PATIENCE * HEARTBEAT_INTERVAL_S
RESTART_DELAY_S = NODE_OFFLINE_AFTER_S + 15  # a margin for clock ticks and a slow SuperLink

# SuperNode keys: the private key in OpenSSH format, unencrypted, EC
# (supernode/cli/flower_supernode.py: _try_setup_client_authentication calls
# load_ssh_private_key(data, None)); the public key in OpenSSH format on a NIST curve
# (cli/supernode/register.py: try_load_public_key; supercore/primitives/asymmetric.py:
# uses_nist_ec_curve). `flwr supernode register`'s help names P-384.
NODE_KEY_CURVE = "secp384r1"

# The CLI's SuperLink connection in $FLWR_HOME/config.toml (default ~/.flwr): keys
# `address` and `root-certificates`, the latter an absolute path (cli/constant.py:
# SuperLinkConnectionTomlKey; cli/typing.py: SuperLinkConnection.__post_init__).
CONFIG_FILE = "config.toml"
DEFAULT_FLWR_HOME = "~/.flwr"

# Subprocess isolation (the default) starts `flower-superexec` by name, found on PATH
# (supernode/start_client_internal.py, superlink/cli/flower_superlink.py).
SUPEREXEC = "flower-superexec"
