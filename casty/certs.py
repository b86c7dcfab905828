"""Certificate tooling for `TLSTransport`: a private cluster CA and node certificates.

Needs ``cryptography`` (``pip install 'casty[tls]'``). The ``casty cert`` commands call these
functions, and so do the tests, which build a throwaway CA per session.

Layout written::

    create_ca(out)                      out/ca.pem  out/ca.key
    create_node_certificate("n1", ...)  out/n1.pem  out/n1.key

Keys are unencrypted PKCS#8 PEM files with mode 0600; certificates are mode 0644. Files are
written to a temporary name and renamed into place, so a process watching them (a
`TLSTransport` picking up a rotated certificate) never reads a half-written file. Directories
that do not exist yet are created with mode 0700, missing parents included; existing ones are
left as they are.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from casty.errors import ConfigurationError

__all__ = [
    "CertificateFiles",
    "KeyType",
    "OverwriteRefused",
    "certificate_info",
    "create_ca",
    "create_node_certificate",
]

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
DEFAULT_SANS = ("localhost", "127.0.0.1")
# Lets a clock slightly behind the issuer's accept a fresh certificate.
_BACKDATE = dt.timedelta(minutes=5)
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where a certificate and its key were written."""

    cert: Path
    key: Path


class OverwriteRefused(ConfigurationError):
    """A file to write exists and ``force`` is false; ``paths`` names the existing files."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(f"refusing to overwrite {', '.join(paths)}; pass force=True to replace")
        self.paths = paths


@contextmanager
def _errors(what: str) -> Iterator[None]:
    # One choke point: file-system and parsing errors become ConfigurationError.
    try:
        yield
    except ConfigurationError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{what}: {exc}") from exc


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ConfigurationError(f"key_type must be 'ec' or 'rsa', got {key_type!r}")


def _validity(
    days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    if days <= 0:
        raise ConfigurationError(f"days must be positive, got {days}")
    start = not_before or dt.datetime.now(dt.UTC) - _BACKDATE
    end = not_after or start + _BACKDATE + dt.timedelta(days=days)
    if end <= start:
        raise ConfigurationError("not_after must be later than not_before")
    return start, end


def _refuse_overwrite(paths: Iterable[Path], force: bool) -> None:
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        raise OverwriteRefused(existing)


def _make_dirs(path: Path) -> None:
    # Path.mkdir(parents=True) gives the parents it creates the umask's mode (0777 under umask
    # 000): create every missing level with 0700 here, and leave existing ones alone.
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # created concurrently by someone else: not ours to change
        os.chmod(directory, 0o700)  # the umask may have narrowed it


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed or the file may have pre-existed
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save(cert: x509.Certificate, key: PrivateKey, files: CertificateFiles) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(files.key, key_pem, 0o600)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _key_usage(*, ca: bool, key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def create_ca(
    out_dir: str | os.PathLike[str],
    *,
    common_name: str = "Casty CA",
    days: int = 3650,
    key_type: KeyType = "ec",
    force: bool = False,
) -> CertificateFiles:
    """Create a self-signed CA for a cluster: ``out_dir/ca.pem`` and ``out_dir/ca.key``.

    The CA may sign node certificates only (path length 0).

    Args:
        out_dir: directory to write to; it and any missing parent are created with mode
            0700, existing directories are left as they are.
        common_name: the CA's subject CN.
        days: validity in days from now.
        key_type: ``"ec"`` (P-256, the default) or ``"rsa"`` (2048 bits).
        force: replace existing files.

    Returns:
        The written paths.

    Raises:
        ConfigurationError: a file exists and ``force`` is false (`OverwriteRefused`),
            ``days`` is not positive, or the directory cannot be written.
    """
    out = Path(out_dir)
    files = CertificateFiles(out / CA_CERT, out / CA_KEY)
    with _errors(f"cannot create a CA in {out}"):
        _refuse_overwrite((files.cert, files.key), force)
        start, end = _validity(days, None, None)
        key = _new_key(key_type)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True, key=key), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        _make_dirs(out)
        _save(cert, key, files)
    return files


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not value or not all(_DNS_LABEL.match(label) for label in value.rstrip(".").split(".")):
        raise ConfigurationError(f"{value!r} is neither an IP address nor a DNS name")
    return x509.DNSName(value)


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, PrivateKey]:
    with _errors(f"cannot load the CA from {ca_dir}"):
        cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ConfigurationError(f"{ca_dir / CA_KEY} holds an unsupported key type")
        # Inside the choke point: a malformed extension raises ValueError on first access.
        _check_issuer(ca_dir, cert, key)
    return cert, key


def _is_ca(cert: x509.Certificate) -> bool:
    """Whether ``cert`` has BasicConstraints CA:TRUE.

    Raises:
        ValueError: the certificate's extensions cannot be parsed.
    """
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_issuer(ca_dir: Path, cert: x509.Certificate, key: PrivateKey) -> None:
    # A certificate signed by a non-CA (a node's pair copied in as ca.pem / ca.key) or by a key
    # other than the CA certificate's would be written fine and then never verify.
    subject = cert.subject.rfc4514_string()
    if not _is_ca(cert):
        raise ConfigurationError(
            f"{ca_dir / CA_CERT} ({subject}) is not a CA certificate (no BasicConstraints "
            "CA:TRUE); create one with `casty cert create-ca`"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise ConfigurationError(
            f"{ca_dir / CA_CERT} ({subject}) is not a CA certificate: its key usage does not "
            "allow signing certificates (keyCertSign)"
        )
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ConfigurationError(
            f"{ca_dir / CA_KEY} does not match the public key of {ca_dir / CA_CERT} ({subject})"
        )


def create_node_certificate(
    name: str,
    ca_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    sans: Iterable[str] | None = None,
    days: int = 825,
    key_type: KeyType = "ec",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    force: bool = False,
) -> CertificateFiles:
    """Create ``out_dir/NAME.pem`` and ``out_dir/NAME.key``, signed by the CA in ``ca_dir``.

    The certificate's subject is ``CN=NAME``; it is valid for both TLS server and client
    authentication, so one file serves a node in both roles.

    Args:
        name: the node name, the subject CN (and a DNS SAN when it is a valid host name).
        ca_dir: the directory `create_ca` wrote.
        out_dir: where to write; defaults to ``ca_dir``.
        sans: subject alternative names (DNS names or IP addresses); ``None`` means
            ``localhost`` and ``127.0.0.1``. ``name`` is added in every case when it is a DNS name.
        days: validity in days from now (ignored when ``not_after`` is given). A validity
            reaching past the CA's own expiry is shortened to end with the CA's, with a
            `UserWarning` saying so: a certificate cannot be verified beyond its issuer's life.
        key_type: ``"ec"`` (P-256) or ``"rsa"`` (2048 bits).
        not_before, not_after: explicit validity bounds (timezone-aware), for tests of
            expired or not-yet-valid certificates.
        force: replace existing files.

    Returns:
        The written paths.

    Raises:
        ConfigurationError: the CA cannot be loaded or is no CA (no BasicConstraints CA:TRUE, a
            key usage without keyCertSign, or ``ca.key`` not the key of ``ca.pem``), a SAN is
            malformed, a file exists and ``force`` is false (`OverwriteRefused`), or the
            validity bounds are empty (also when the CA expired before them).
    """
    if not name or "/" in name or name.startswith("."):
        raise ConfigurationError(f"invalid node name {name!r}")
    ca_path = Path(ca_dir)
    out = Path(out_dir) if out_dir is not None else ca_path
    files = CertificateFiles(out / f"{name}.pem", out / f"{name}.key")
    ca_cert, ca_key = _load_ca(ca_path)
    names = list(DEFAULT_SANS if sans is None else sans)
    try:
        _general_name(name)
        names.insert(0, name)
    except ConfigurationError:
        pass  # a name such as "worker 1" is a fine CN but no host name
    general = [_general_name(value) for value in dict.fromkeys(names)]
    with _errors(f"cannot create a certificate for {name!r} in {out}"):
        _refuse_overwrite((files.cert, files.key), force)
        start, end = _validity(days, not_before, not_after)
        ca_end = ca_cert.not_valid_after_utc
        if end > ca_end:
            if ca_end <= start:
                raise ConfigurationError(
                    f"the CA {ca_cert.subject.rfc4514_string()} expired at {ca_end.isoformat()}, "
                    "before the certificate would become valid"
                )
            warnings.warn(
                f"the validity of {name!r} was shortened to end with its CA's, at "
                f"{ca_end.isoformat()} (requested {end.replace(microsecond=0).isoformat()})",
                UserWarning,
                stacklevel=2,
            )
            end = ca_end
        key = _new_key(key_type)
        public = key.public_key()
        try:
            ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
        except x509.ExtensionNotFound:  # a CA made by other tooling may lack the extension
            authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False, key=key), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(general), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(authority, critical=False)
        )
        cert = builder.sign(ca_key, hashes.SHA256())
        _make_dirs(out)
        _save(cert, key, files)
    return files


_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
}


def _describe_key(public: Any) -> str:
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"EC {public.curve.name}"
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}"
    return type(public).__name__


def certificate_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe the certificates in the PEM file at ``path``: the first one, and all of them.

    A CA bundle holds several certificates (the old and the new CA during a rotation); every
    one of them is listed under ``certificates``, in file order.

    Returns:
        A JSON-ready dict describing the first certificate: ``path``, ``subject`` and
        ``issuer`` (RFC 4514), ``serial_number`` (hex), ``not_before`` / ``not_after``
        (ISO 8601, UTC), ``expired`` (bool), ``is_ca`` (bool), ``key`` (``"EC secp256r1"``,
        ``"RSA 2048"``), ``sans`` (list of strings), ``extended_key_usage`` (list such as
        ``["serverAuth", "clientAuth"]``) and ``fingerprint_sha256`` (colon-separated hex);
        plus ``certificates``, a list with one dict of those same keys per certificate in the
        file (the first included, so it has one entry for a single certificate).

    Raises:
        ConfigurationError: the file cannot be read or holds no PEM certificate.
    """
    with _errors(f"cannot read a certificate from {path}"):
        data = Path(path).read_bytes()
        if b"PRIVATE KEY-----" in data and b"-----BEGIN CERTIFICATE-----" not in data:
            raise ConfigurationError(
                f"{path} holds a private key, not a certificate (keep it secret; `cert info` "
                "reads the .pem file next to it)"
            )
        certs = x509.load_pem_x509_certificates(data)
        if not certs:
            raise ConfigurationError(f"cannot read a certificate from {path}: no PEM certificate")
        # Inside the choke point: a malformed extension raises ValueError on first access.
        described = [_describe(path, cert) for cert in certs]
    return {**described[0], "certificates": described}


def _describe(path: str | os.PathLike[str], cert: x509.Certificate) -> dict[str, Any]:
    extensions = cert.extensions
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(value) for value in san.get_values_for_type(x509.DNSName)]
        sans += [str(value) for value in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    try:
        usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        eku = [_EKU_NAMES.get(oid, oid.dotted_string) for oid in usages]
    except x509.ExtensionNotFound:
        eku = []
    not_after = cert.not_valid_after_utc
    return {
        "path": str(path),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial_number": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": not_after.isoformat(),
        "expired": not_after < dt.datetime.now(dt.UTC),
        "is_ca": _is_ca(cert),
        "key": _describe_key(cert.public_key()),
        "sans": sans,
        "extended_key_usage": eku,
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    }
