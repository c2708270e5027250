"""A private CA and the SuperLink's TLS server certificate, made with ``cryptography``.

The files are those Flower's commands ask for::

    flower-superlink  --ssl-ca-certfile ca.crt --ssl-certfile server.pem --ssl-keyfile server.key
    flower-supernode  --root-certificates ca.crt
    config.toml       root-certificates = "/absolute/path/ca.crt"

``ca.key`` signs nothing else at run time: keep it off the SuperLink if you can, and use it
only to issue a new server certificate (with another address, or when this one expires).

The server certificate is valid for the hosts the SuperNodes and the ``flwr`` CLI dial, and
always for 127.0.0.1, ::1 and localhost too: a SuperLink bound to 0.0.0.0 (or ::) starts its
own ``flower-superexec`` against 127.0.0.1 (or ::1) over TLS (flwr's supercore/address.py:
``resolve_bind_address``), and the CLI on the server itself may connect there.

Keys are EC P-256 and signatures ECDSA-SHA256, which every TLS stack Flower uses accepts.
Validity starts a day early: a Raspberry Pi has no real-time clock and may boot with a
clock slightly behind the server's.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlora.deploy.addresses import Ip, parse_host
from fedlora.deploy.output import PRIVATE, PUBLIC, prepare_output_dir, write_file
from fedlora.errors import FedloraError

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"

LOOPBACK_HOSTS: tuple[str | Ip, ...] = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), "localhost")
CA_DAYS = 3650
SERVER_DAYS = 825
BACKDATE = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    """Where ``fedlora deploy ca`` put the CA and the server certificate (absolute paths)."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.folder / CA_KEY

    @property
    def server_cert(self) -> Path:
        return self.folder / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.folder / SERVER_KEY

    @classmethod
    def existing(cls, folder: Path) -> TlsFiles:
        """The files of an earlier ``fedlora deploy ca``; the CA key may have been moved away."""
        files = cls(Path(folder).expanduser().absolute())
        missing = [path.name for path in (files.ca_cert, files.server_cert, files.server_key) if not path.is_file()]
        if missing:
            raise FedloraError(f"{files.folder} lacks {', '.join(missing)}; create it with `fedlora deploy ca --out {folder}`")
        return files


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedlora"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(host: str | Ip) -> x509.GeneralName:
    return x509.DNSName(host) if isinstance(host, str) else x509.IPAddress(host)


def server_hosts(hosts: list[str]) -> list[str | Ip]:
    """The checked hosts a server certificate names: the given ones, then loopback, no repeats."""
    parsed = [parse_host(host) for host in hosts]
    return list(dict.fromkeys([*parsed, *LOOPBACK_HOSTS]))


def create_ca(now: datetime.datetime, days: int = CA_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign server certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("fedlora deployment CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: list[str | Ip], now: datetime.datetime, days: int = SERVER_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server certificate for ``hosts`` (subject alternative names), signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(str(hosts[0])))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(host) for host in hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def write_tls_files(out: Path, hosts: list[str], days: int = SERVER_DAYS, force: bool = False) -> TlsFiles:
    """Check ``hosts``, then write a new CA and a server certificate for them into ``out``."""
    if days < 1:
        raise FedloraError(f"--days must be at least 1, got {days}")
    names = server_hosts(hosts)  # refuse a bad address before touching the folder
    files = TlsFiles(prepare_output_dir(out, force))
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, ca_cert = create_ca(now, max(CA_DAYS, days))
    server_key, server_cert = issue_server_certificate(ca_key, ca_cert, names, now, days)
    write_file(files.ca_key, _pem_key(ca_key), PRIVATE)
    write_file(files.server_key, _pem_key(server_key), PRIVATE)
    write_file(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), PUBLIC)
    write_file(files.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), PUBLIC)
    return files


def certificate_hosts(path: Path) -> list[str | Ip]:
    """The hosts (subject alternative names) of the certificate at ``path``, in their order."""
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [name.value for name in names if isinstance(name, (x509.DNSName, x509.IPAddress))]
