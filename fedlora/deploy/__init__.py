"""A scripted, secure deployment on Flower's Deployment Engine.

One concept per module:

- ``flower.py``        the Flower 1.42 facts the deployment relies on (ports, file formats,
                       the heartbeat timeout), each with where it lives in Flower's source
- ``addresses.py``     host names, IP addresses and ``host:port`` as a user types them
- ``output.py``        an output folder that is not silently overwritten; private files 0600
- ``certificates.py``  a CA and the SuperLink's TLS certificate (``fedlora deploy ca``)
- ``node_keys.py``     SuperNode authentication key pairs (``fedlora deploy node-keys``)
- ``plan.py``          where everything lives on the server and on the devices
- ``supernode.py``     a SuperNode's command line, node config and environment on its device
- ``systemd.py``       a systemd unit that runs that SuperNode
- ``commands.py``      every line to run, in order, and the ``config.toml`` entry (``fedlora deploy commands``)

Only ``cryptography`` is needed (a base dependency): a server can prepare a deployment
before torch or flwr are installed.
"""
