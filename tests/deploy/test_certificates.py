"""The CA and the SuperLink's certificate: a chain that verifies, the right names, tight files."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from fedlora.deploy.certificates import certificate_hosts, write_tls_files
from fedlora.errors import FedloraError

LOOPBACK = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), "localhost"]


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_server_certificate_verifies_against_the_ca_for_every_name(tmp_path):
    files = write_tls_files(tmp_path / "tls", ["192.168.1.10", "superlink.lan"])
    ca, server = load(files.ca_cert), load(files.server_cert)
    verifier_for = PolicyBuilder().store(Store([ca])).time(datetime.datetime.now(datetime.timezone.utc))
    for host in certificate_hosts(files.server_cert):
        subject = x509.DNSName(host) if isinstance(host, str) else x509.IPAddress(host)
        chain = verifier_for.build_server_verifier(subject).verify(server, [])
        assert [c.subject for c in chain] == [server.subject, ca.subject]
    with pytest.raises(Exception):  # a name the certificate does not carry
        verifier_for.build_server_verifier(x509.DNSName("other.lan")).verify(server, [])


def test_the_names_are_the_given_hosts_then_loopback(tmp_path):
    files = write_tls_files(tmp_path / "tls", ["192.168.1.10", "SuperLink.LAN", "fd00::1", "localhost"])
    assert certificate_hosts(files.server_cert) == [
        ipaddress.ip_address("192.168.1.10"), "superlink.lan", ipaddress.ip_address("fd00::1"), "localhost",
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
    ]  # fmt: skip
    assert certificate_hosts(write_tls_files(tmp_path / "default", []).server_cert) == LOOPBACK


def test_the_ca_only_signs_and_the_server_certificate_only_serves(tmp_path):
    files = write_tls_files(tmp_path / "tls", [], days=30)
    ca, server = load(files.ca_cert), load(files.server_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    assert (server.not_valid_after_utc - server.not_valid_before_utc).days == 31  # a day early for clocks behind
    assert ca.not_valid_after_utc > server.not_valid_after_utc


def test_python_tls_accepts_the_pair_by_ip_and_by_name(tmp_path):
    """What uvicorn (the SuperLink) and httpx (SuperNode, flwr) do: OpenSSL, hostname checked."""
    files = write_tls_files(tmp_path / "tls", [])
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.server_cert, files.server_key)
    client_context = ssl.create_default_context(cafile=str(files.ca_cert))
    for name in ("127.0.0.1", "::1", "localhost"):
        client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
        client = client_context.wrap_bio(client_in, client_out, server_hostname=name)
        server = server_context.wrap_bio(server_in, server_out, server_side=True)
        for _ in range(10):  # pump the handshake through memory, no sockets
            for side in (client, server):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            server_in.write(client_out.read())
            client_in.write(server_out.read())
        assert client.version() and server.version(), name
        assert client.getpeercert()["subject"]


def test_private_keys_are_owner_only_and_certificates_readable(tmp_path):
    os.umask(0o000)  # the modes must not depend on the umask
    try:
        files = write_tls_files(tmp_path / "tls", [])
    finally:
        os.umask(0o022)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files.folder.iterdir()}
    assert modes == {"ca.key": 0o600, "server.key": 0o600, "ca.crt": 0o644, "server.pem": 0o644}
    assert stat.S_IMODE(files.folder.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "address, message",
    [
        ("https://superlink.lan", "neither an IP address nor a host name"),
        ("192.168.1.10:8000", "neither an IP address nor a host name"),
        ("192.168.1.300", "not a valid IP address"),
        ("bad_name.lan", "neither an IP address nor a host name"),
        ("", "neither an IP address nor a host name"),
    ],
)
def test_a_bad_address_is_refused_before_anything_is_written(tmp_path, address, message):
    with pytest.raises(FedloraError, match=message):
        write_tls_files(tmp_path / "tls", [address])
    assert not (tmp_path / "tls").exists()


def test_an_existing_folder_is_kept_unless_forced(tmp_path):
    first = write_tls_files(tmp_path / "tls", [])
    ca = first.ca_cert.read_bytes()
    with pytest.raises(FedloraError, match="not empty.*--force"):
        write_tls_files(tmp_path / "tls", [])
    assert first.ca_cert.read_bytes() == ca
    assert write_tls_files(tmp_path / "tls", [], force=True).ca_cert.read_bytes() != ca


def test_an_unwritable_place_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FedloraError, match="is a file"):
        write_tls_files(tmp_path / "a-file", [])
    with pytest.raises(FedloraError, match="cannot create"):
        write_tls_files(tmp_path / "a-file" / "tls", [])
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(FedloraError, match="cannot create|not writable"):
            write_tls_files(locked / "tls", [])
