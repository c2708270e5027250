"""Ed25519 signatures over a bundle's ``manifest.json``.

The manifest pins the SHA-256 of every other file of a device bundle, so one signature
over the manifest's exact bytes covers the whole bundle. The signature is the raw 64
bytes Ed25519 produces, stored as ``manifest.sig``. Keys are PEM files: a PKCS#8 private
key to sign (``openssl genpkey -algorithm ed25519``), its SubjectPublicKeyInfo public key
to verify (``openssl pkey -pubout``).

``cryptography`` is imported only when a signature is made or checked, so a device that
does not verify signatures needs numpy alone.
"""

from __future__ import annotations

__all__ = ["SignatureError", "generate_key_pair", "sign_manifest", "verify_manifest"]

SIGNATURE_BYTES = 64


class SignatureError(ValueError):
    """A key could not be used, or a signature does not verify."""


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - cryptography is a base dependency
        raise SignatureError(
            "signing and verifying bundles needs the 'cryptography' package: pip install cryptography"
        ) from exc
    return serialization, ed25519, InvalidSignature


def sign_manifest(manifest: bytes, private_key_pem: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``manifest`` with a PEM private key."""
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(
            f"the signing key is not an unencrypted PEM private key ({exc}); create one with "
            "`openssl genpkey -algorithm ed25519 -out key.pem`"
        ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"the signing key is a {type(key).__name__}, not an Ed25519 key")
    return key.sign(manifest)


def verify_manifest(manifest: bytes, signature: bytes, public_key_pem: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``manifest``'s, by that key."""
    serialization, ed25519, invalid_signature = _crypto()
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"the public key is not a PEM public key ({exc})") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"the public key is a {type(key).__name__}, not an Ed25519 key")
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(f"the signature is {len(signature)} bytes; an Ed25519 signature has 64")
    try:
        key.verify(signature, manifest)
    except invalid_signature as exc:
        raise SignatureError(
            "the signature does not match manifest.json and this public key: the manifest was "
            "changed after signing, or it was signed with another key"
        ) from exc


def generate_key_pair() -> tuple[bytes, bytes]:
    """A fresh ``(private_pem, public_pem)`` Ed25519 pair (for tests and first-time setup)."""
    serialization, ed25519, _ = _crypto()
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem
