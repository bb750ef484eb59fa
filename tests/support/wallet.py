"""Wallet test material: a root CA, a WWDR-like intermediate, the issuer's pass certificate with its key
(encrypted PEM), a Google service-account key, and the [wallet] settings that use them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from purse.settings import WalletSettings

PASSPHRASE = "pass-key-passphrase"
PASS_TYPE = "pass.example.coffee.cards"


def _cert(subject: str, key: Any, issuer_name: str, issuer_key: Any, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def make_pki(folder: Path) -> dict[str, Path]:
    """A root, a WWDR-like intermediate, the issuer's pass certificate and its encrypted key; a Google
    service-account key, encrypted too: their files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in
            ("root", "wwdr", "pass", "google")}
    root = _cert("Test Root CA", keys["root"], "Test Root CA", keys["root"], True)
    wwdr = _cert("Test WWDR", keys["wwdr"], "Test Root CA", keys["root"], True)
    cert = _cert(f"Pass Type ID: {PASS_TYPE}", keys["pass"], "Test WWDR", keys["wwdr"], False)
    out = {}
    for name, c in (("root", root), ("wwdr", wwdr), ("pass", cert)):
        out[name] = folder / f"{name}.pem"
        out[name].write_bytes(c.public_bytes(serialization.Encoding.PEM))
    for name in ("pass", "google"):
        out[f"{name}_key"] = folder / f"{name}.key"
        out[f"{name}_key"].write_bytes(keys[name].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    out["google_public"] = folder / "google.pub"
    out["google_public"].write_bytes(keys["google"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def wallet_settings(pki: dict[str, Path], **extra: str) -> WalletSettings:
    return WalletSettings(pass_type_id=PASS_TYPE, team_id="TEAM123456", certificate=str(pki["pass"]),
                          key=str(pki["pass_key"]), wwdr_certificate=str(pki["wwdr"]),
                          locations="55.7558,37.6173,Coffee House on Tverskaya; 55.7601,37.6187,Coffee House Arbat",
                          google_issuer_id="3388000000022", google_service_account="wallet@coffee.iam.example",
                          google_key=str(pki["google_key"]), **extra)
