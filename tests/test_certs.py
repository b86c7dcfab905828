"""Certificate tooling through the ``casty cert`` commands, end to end."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from casty.certs import certificate_info, create_ca, create_node_certificate
from casty.cli import main
from casty.errors import ConfigurationError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_create_ca_writes_a_ca_certificate_and_a_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pki"
    assert main(["cert", "create-ca", "--out", str(out), "--days", "30"]) == 0
    assert "ca.pem" in capsys.readouterr().out
    assert mode(out / "ca.key") == 0o600
    assert mode(out / "ca.pem") == 0o644
    cert = load(out / "ca.pem")
    assert cert.subject == cert.issuer
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=10)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_create_node_signs_a_certificate_for_both_tls_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_dir, out = tmp_path / "ca", tmp_path / "nodes"
    assert main(["cert", "create-ca", "--out", str(ca_dir)]) == 0
    argv = ["cert", "create-node", "worker-1", "--ca-dir", str(ca_dir), "--out", str(out)]
    assert main([*argv, "--san", "10.0.0.7", "--san", "worker-1.internal"]) == 0
    assert mode(out / "worker-1.key") == 0o600
    assert mode(out / "worker-1.pem") == 0o644
    cert, ca = load(out / "worker-1.pem"), load(ca_dir / "ca.pem")
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)  # raises unless the CA's key signed it
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    capsys.readouterr()
    assert main(["cert", "info", str(out / "worker-1.pem"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["subject"] == "CN=worker-1"
    assert info["issuer"] == "CN=Casty CA"
    assert info["sans"] == ["worker-1", "worker-1.internal", "10.0.0.7"]
    assert info["extended_key_usage"] == ["serverAuth", "clientAuth"]
    assert info["is_ca"] is False and info["expired"] is False
    assert info["key"] == "EC secp256r1"


def test_default_sans_include_localhost_and_loopback(tmp_path: Path) -> None:
    create_ca(tmp_path)
    files = create_node_certificate("node-1", tmp_path, key_type="rsa")
    info = certificate_info(files.cert)
    assert info["sans"] == ["node-1", "localhost", "127.0.0.1"]
    assert info["key"] == "RSA 2048"
    assert isinstance(load(files.cert).public_key(), rsa.RSAPublicKey)


def test_info_prints_readable_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_ca(tmp_path, common_name="Ops CA")
    assert main(["cert", "info", str(tmp_path / "ca.pem")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "subject: CN=Ops CA" in lines
    assert "is_ca: True" in lines
    assert any(line.startswith("fingerprint_sha256: ") for line in lines)


def test_existing_files_are_not_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cert", "create-ca", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "ca.pem").read_bytes()
    assert main(["cert", "create-ca", "--out", str(tmp_path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "ca.pem").read_bytes() == before
    assert main(["cert", "create-ca", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() != before
    assert mode(tmp_path / "ca.key") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]  # no temp files


def test_errors_are_reported_with_exit_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cert", "create-node", "n1", "--ca-dir", str(tmp_path / "none")]) == 1
    assert "cannot load the CA" in capsys.readouterr().err
    create_ca(tmp_path)
    assert main(["cert", "create-node", "n1", "--ca-dir", str(tmp_path), "--san", "bad host"]) == 1
    assert "neither an IP address nor a DNS name" in capsys.readouterr().err
    (tmp_path / "junk.pem").write_text("junk")
    assert main(["cert", "info", str(tmp_path / "junk.pem")]) == 1
    assert "cannot read a certificate" in capsys.readouterr().err


def test_usage_errors_exit_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert"]) == 2
    assert main(["cert", "create-node"]) == 2
    assert main(["--help"]) == 0
    assert "cert" in capsys.readouterr().out


def test_explicit_validity_bounds_make_expired_certificates(tmp_path: Path) -> None:
    create_ca(tmp_path)
    now = dt.datetime.now(dt.UTC)
    files = create_node_certificate(
        "old",
        tmp_path,
        not_before=now - dt.timedelta(days=10),
        not_after=now - dt.timedelta(days=1),
    )
    assert certificate_info(files.cert)["expired"] is True
    with pytest.raises(ConfigurationError, match="later than"):
        create_node_certificate("bad", tmp_path, not_before=now, not_after=now)
