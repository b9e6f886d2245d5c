"""HTTPS through the vetted address: SNI, Host and the certificate check use the URL's name, not the IP."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509  # a dependency of c2pa-python (base): always here
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aidetect.settings import Settings
from fetch.client import SafeFetcher
from fetch.errors import FetchError
from tests.httpserver.handlers import image_reply, png_bytes
from tests.httpserver.network import NetworkGuard, StaticResolver, loopback_only
from tests.httpserver.server import LocalHTTPServer

PNG = png_bytes()


def make_settings(connect_timeout_s: float = 1.0, total_timeout_s: float = 2.0) -> Settings:
    return Settings(allow_private_networks=False, allowed_networks=["127.0.0.0/8"], read_timeout_s=1.0,
                    connect_timeout_s=connect_timeout_s, total_timeout_s=total_timeout_s, max_image_bytes=1 << 20)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
                 ca: bool, dns_names: list[str]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                                        critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA and a server certificate for img.test, as PEM files."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("aidetect test CA", "aidetect test CA", ca_key, ca_key, True, [])
    leaf = _certificate("img.test", "aidetect test CA", leaf_key, ca_key, False, ["img.test"])
    paths = {"ca": root / "ca.pem", "cert": root / "leaf.pem", "key": root / "leaf.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return paths


@pytest.fixture(autouse=True)
def guard() -> Iterator[NetworkGuard]:
    with loopback_only() as seen:
        yield seen


@pytest.fixture
def server(pki: dict[str, Path]) -> Iterator[LocalHTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    with LocalHTTPServer({"/a.png": image_reply(PNG)}, tls=context) as srv:
        yield srv


@pytest.fixture
def fetcher(pki: dict[str, Path]) -> Iterator[SafeFetcher]:
    resolver = StaticResolver({"img.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with SafeFetcher(make_settings(), resolver=resolver, ca_certs=str(pki["ca"])) as f:
        yield f


def test_https_uses_the_name_for_sni_host_and_certificate(fetcher: SafeFetcher, server: LocalHTTPServer,
                                                          guard: NetworkGuard) -> None:
    result = fetcher.fetch(server.url("/a.png", host="img.test"))
    assert result.content == PNG
    assert server.sni_names == ["img.test"]
    assert server.requests[0].headers["Host"] == f"img.test:{server.port}"
    assert set(guard.connects) == {"127.0.0.1"}


@pytest.mark.parametrize("host", ["other.test", "127.0.0.1"])
def test_a_certificate_for_another_name_is_refused(fetcher: SafeFetcher, server: LocalHTTPServer,
                                                   host: str) -> None:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(server.url("/a.png", host=host))
    assert (info.value.code, info.value.transient) == ("tls_error", False)
    assert server.count() == 0


def test_an_unknown_ca_is_refused(server: LocalHTTPServer) -> None:
    with SafeFetcher(make_settings(), resolver=StaticResolver({"img.test": ["127.0.0.1"]})) as fetcher:
        with pytest.raises(FetchError) as info:
            fetcher.fetch(server.url("/a.png", host="img.test"))
    assert info.value.code == "tls_error"
    assert server.count() == 0


def test_a_dripping_tls_handshake_ends_at_the_deadline(pki: dict[str, Path]) -> None:
    """Each byte comes well within the 5 s connect timeout; the 1.5 s total deadline ends the handshake."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip_handshake() -> None:
        conn, _ = listener.accept()
        with conn:
            record = b"\x16\x03\x03\x40\x00" + b"\x02" * 200  # the start of a 16 KiB handshake record
            for byte in record:  # bounded: 200 bytes, at most 0.3 s apart
                if stop.wait(0.3):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=drip_handshake, daemon=True)
    thread.start()
    settings = make_settings(connect_timeout_s=5.0, total_timeout_s=1.5)
    fetcher = SafeFetcher(settings, resolver=StaticResolver({"img.test": ["127.0.0.1"]}), ca_certs=str(pki["ca"]))
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as info:
            fetcher.fetch(f"https://img.test:{listener.getsockname()[1]}/a.png")
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        fetcher.close()
    assert (info.value.code, info.value.transient) == ("timeout", True)
    assert 1.3 < time.monotonic() - started < 2.5
