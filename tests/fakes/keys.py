"""APNs auth keys for tests: EC P-256 pairs as PEM, like the ``.p8`` files Apple issues."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def ec_key_pair(curve: ec.EllipticCurve | None = None) -> tuple[bytes, bytes]:
    """A fresh (private PKCS#8 PEM, public PEM) pair, on P-256 unless ``curve`` says."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def rsa_key_pem() -> bytes:
    """A private RSA key as PKCS#8 PEM: what an APNs key must not be."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
