"""Certificate tooling through the ``casty cert`` commands, end to end."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from casty.certs import certificate_info, create_ca, create_node_certificate
from casty.cli import main
from casty.errors import ConfigurationError


def write_self_signed_ca(ca_dir: Path, *extensions: x509.ExtensionType, common_name: str) -> None:
    """Write ``ca.pem`` and ``ca.key`` of a one-day self-signed certificate with ``extensions``
    (all critical) into ``ca_dir``: CAs the casty tooling would never make."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=True)
    cert = builder.sign(key, hashes.SHA256())
    (ca_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (ca_dir / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


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


def test_create_node_refuses_an_issuer_that_is_not_a_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_ca(tmp_path / "pki")
    node = create_node_certificate("node-1", tmp_path / "pki")
    fake = tmp_path / "fake"  # a node's certificate and key copied in as ca.pem / ca.key
    fake.mkdir()
    (fake / "ca.pem").write_bytes(node.cert.read_bytes())
    (fake / "ca.key").write_bytes(node.key.read_bytes())
    assert main(["cert", "create-node", "x", "--ca-dir", str(fake)]) == 1
    assert "not a CA certificate" in capsys.readouterr().err
    assert sorted(p.name for p in fake.iterdir()) == ["ca.key", "ca.pem"]
    # A real CA certificate with a key that is not its own is refused too.
    other = tmp_path / "other"
    create_ca(other)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ca.pem").write_bytes((tmp_path / "pki" / "ca.pem").read_bytes())
    (mixed / "ca.key").write_bytes((other / "ca.key").read_bytes())
    with pytest.raises(ConfigurationError, match="does not match"):
        create_node_certificate("x", mixed)
    assert not (mixed / "x.pem").exists()
    # A CA certificate whose key usage forbids signing certificates is refused.
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    write_self_signed_ca(
        mixed, x509.BasicConstraints(ca=True, path_length=0), usage, common_name="No Sign CA"
    )
    with pytest.raises(ConfigurationError, match="keyCertSign"):
        create_node_certificate("x", mixed)


def test_a_ca_with_a_malformed_extension_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02garbage")
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    write_self_signed_ca(ca_dir, garbage, common_name="Malformed CA")
    with pytest.raises(ConfigurationError, match="cannot load the CA") as raised:
        create_node_certificate("x", ca_dir)
    assert isinstance(raised.value.__cause__, ValueError)
    assert main(["cert", "create-node", "x", "--ca-dir", str(ca_dir)]) == 1
    assert "cannot load the CA" in capsys.readouterr().err
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.key", "ca.pem"]
    with pytest.raises(ConfigurationError, match="cannot read a certificate"):
        certificate_info(ca_dir / "ca.pem")
    # A newcomer pointing `cert info` at the key is told what the file is.
    with pytest.raises(ConfigurationError, match="holds a private key, not a certificate"):
        certificate_info(ca_dir / "ca.key")


def test_a_node_certificate_never_outlives_its_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cert", "create-ca", "--out", str(tmp_path), "--days", "30"]) == 0
    capsys.readouterr()
    assert main(["cert", "create-node", "long", "--ca-dir", str(tmp_path), "--days", "9000"]) == 0
    captured = capsys.readouterr()
    ca, cert = load(tmp_path / "ca.pem"), load(tmp_path / "long.pem")
    assert cert.not_valid_after_utc == ca.not_valid_after_utc
    assert "casty: warning:" in captured.err and "shortened" in captured.err
    assert ca.not_valid_after_utc.isoformat() in captured.err
    # The Python API warns too; within the CA's lifetime nothing is said.
    with pytest.warns(UserWarning, match="shortened"):
        create_node_certificate("api", tmp_path, days=9000)
    assert load(tmp_path / "api.pem").not_valid_after_utc == ca.not_valid_after_utc
    assert main(["cert", "create-node", "short", "--ca-dir", str(tmp_path), "--days", "7"]) == 0
    assert capsys.readouterr().err == ""


def test_info_reports_every_certificate_of_a_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_ca(tmp_path / "old", common_name="Old CA")
    create_ca(tmp_path / "new", common_name="New CA", days=100)
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes((tmp_path / "old" / "ca.pem").read_bytes() + b"\n")
    with bundle.open("ab") as handle:
        handle.write((tmp_path / "new" / "ca.pem").read_bytes())
    assert main(["cert", "info", str(bundle), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["subject"] == "CN=Old CA"  # the top level still describes the first one
    assert [c["subject"] for c in info["certificates"]] == ["CN=Old CA", "CN=New CA"]
    new_expiry = load(tmp_path / "new" / "ca.pem").not_valid_after_utc
    assert info["certificates"][1]["not_after"] == new_expiry.isoformat()
    assert main(["cert", "info", str(bundle)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "subject: CN=Old CA" in lines and "subject: CN=New CA" in lines
    assert "certificate: 1 of 2" in lines and "certificate: 2 of 2" in lines
    # A single certificate keeps the former text output exactly, and a one-entry list.
    assert main(["cert", "info", str(tmp_path / "new" / "ca.pem")]) == 0
    single = capsys.readouterr().out.splitlines()
    assert single[0].startswith("path: ") and not any("certificate" in s for s in single)
    listed = certificate_info(tmp_path / "new" / "ca.pem")["certificates"]
    assert [c["subject"] for c in listed] == ["CN=New CA"]


def test_newly_created_directories_are_private_at_every_level(tmp_path: Path) -> None:
    create_ca(tmp_path / "pki")
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    old_umask = os.umask(0)
    try:
        out = existing / "a" / "b" / "c"
        argv = ["cert", "create-node", "n", "--ca-dir", str(tmp_path / "pki"), "--out", str(out)]
        assert main(argv) == 0
        create_ca(tmp_path / "ca" / "deep")
    finally:
        os.umask(old_umask)
    for directory in (existing / "a", existing / "a" / "b", existing / "a" / "b" / "c"):
        assert mode(directory) == 0o700, directory
    assert mode(existing) == 0o755  # a directory that already existed is left alone
    assert mode(tmp_path / "ca") == mode(tmp_path / "ca" / "deep") == 0o700


def test_messages_name_the_cli_option_and_quote_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_ca(tmp_path)
    assert main(["cert", "create-ca", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "--force" in err and "force=True" not in err
    with pytest.raises(ConfigurationError, match=r"force=True") as raised:
        create_ca(tmp_path)
    assert "--force" not in str(raised.value)
