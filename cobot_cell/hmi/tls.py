"""Where the HMI listens and how: loopback by default; any other address needs TLS (a given certificate, or a
self-signed one generated on first start and kept) or an explicit `insecure` choice.

`python -m cobot_cell.hmi.tls DIR HOST` writes DIR/hmi-cert.pem and DIR/hmi-key.pem (cryptography is imported
only there, so the hmi node never loads it).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CERT_NAME, KEY_NAME = "hmi-cert.pem", "hmi-key.pem"
VALID_DAYS = 825


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(text: str, default_port: int = 8080) -> tuple[str, int]:
    """'HOST:PORT', 'HOST', ':PORT' or '[v6]:PORT' as (host, port); ValueError naming the problem."""
    text = text.strip()
    host, port = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad address {text!r}: missing ']' after an IPv6 host")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected ':PORT' after ']'")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    host = host or "127.0.0.1"
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad address {text!r}: port must be a number from 1 to 65535")
        return host, int(port)
    return host, default_port


@dataclass(frozen=True)
class Listen:
    """The address and the TLS files to serve with (None: plain HTTP)."""

    host: str
    port: int
    cert: str | None
    key: str | None

    @property
    def scheme(self) -> str:
        """'https' or 'http'."""
        return "https" if self.cert else "http"


def plan_listen(
    host: str, port: int, cert: str = "", key: str = "", insecure: bool = False, cert_dir: str | os.PathLike[str] = "."
) -> Listen:
    """How to serve: TLS with the given files, else on a non-loopback address a kept self-signed certificate
    (generated now if missing), or plain HTTP when `insecure` (logged as a warning) or on loopback."""
    if bool(cert) != bool(key):
        raise ValueError("cert and key go together: give both files or neither")
    for what, path in (("cert", cert), ("key", key)):
        if path and not Path(path).is_file():
            raise ValueError(f"{what} file {path} does not exist")
    if cert:
        return Listen(host, port, cert, key)
    if is_loopback(host):
        return Listen(host, port, None, None)
    if insecure:
        logger.warning(
            "serving plain HTTP on %s:%d, a non-loopback address (insecure: passwords and sessions travel unencrypted)",
            host,
            port,
        )
        return Listen(host, port, None, None)
    c, k = self_signed(cert_dir, host)
    return Listen(host, port, str(c), str(k))


def self_signed(directory: str | os.PathLike[str], host: str) -> tuple[Path, Path]:
    """The kept self-signed certificate and key in `directory`, generated (in a child process) if missing."""
    d = Path(directory)
    cert, key = d / CERT_NAME, d / KEY_NAME
    if cert.is_file() and key.is_file():
        logger.info("TLS: using the self-signed certificate %s", cert)
        return cert, key
    d.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(d), host], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0 or not cert.is_file():
        raise RuntimeError(f"could not generate a TLS certificate in {d}: {done.stderr.strip() or done.returncode}")
    logger.warning(
        "TLS: generated a self-signed certificate for %s in %s (browsers warn until it is trusted)", host, cert
    )
    return cert, key


def _generate(directory: Path, host: str) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cobot_cell HMI {host}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path = directory / KEY_NAME
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    (directory / CERT_NAME).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m {__spec__.name if __spec__ else 'cobot_cell.hmi.tls'} DIR HOST")
    _generate(Path(sys.argv[1]), sys.argv[2])
