"""Property-based tests (hypothesis) on hostile inputs, beyond the ones next to the code they test
(tests/producer/test_urls.py: arbitrary text, idempotence; tests/detector/test_detector_decode.py: arbitrary and
corrupted bytes; tests/fetch/test_netguard.py: every IPv4 spelling; tests/provenance/test_provenance_fuzz.py).

Here: URLs built from hostile parts must come out of the producer either refused or in a form the worker
accepts and the address guard can judge; valid pixels under fuzzed EXIF, ICC and text chunks must decode.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from urllib.parse import urlsplit

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from aidetect.settings import Settings
from aidetect.urls import MAX_URL_LENGTH, InvalidURL, normalise_url
from detector.errors import DecodeError
from detector.preprocess import decode_image
from fetch.errors import FetchError
from fetch.netguard import check_host, is_public_address, parse_target
from tests.httpserver.network import StaticResolver
from worker.provenance import MAX_ITEMS, ProvenanceSummary, extract_provenance

GUARD = Settings(allow_private_networks=False, allowed_networks=[])
NO_DNS = StaticResolver()  # every name fails like NXDOMAIN: literals are all the guard may pass

SCHEMES = st.sampled_from(["http", "https", "HTTP", "hTtPs", "file", "ftp", "data", "javascript", "gopher", "ws",
                           "", "http:", "https:/"])
USERINFO = st.sampled_from(["", "", "", "user@", "user:pw@", ":pw@", "a%40b:c@", "@", "user:@"])
IP_SPELLINGS = st.sampled_from([
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "017700000001", "0", "0.0.0.0",
    "10.0.0.1", "167772161", "012.0.0.1", "0xa.0.0.1", "10.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "0xa9fea9fe", "100.64.0.1", "[::1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:10.0.0.1]",
    "[fe80::1]", "[fd00::1]", "[2002:a00:1::1]", "[64:ff9b::a00:1]", "localhost", "LOCALHOST.", "127.0.0.1.",
    "８.８.８.８", "93.184.216.34", "[2606:4700:4700::1111]",
])
NAMES = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,12}){0,3}", fullmatch=True),
    st.text(alphabet=st.characters(min_codepoint=0x61, max_codepoint=0x24F), min_size=1, max_size=12)
    .map(lambda label: f"{label}.example"),  # IDN
    st.text(max_size=20),  # anything at all
)
PORTS = st.one_of(st.just(""), st.integers(0, 70_000).map(lambda p: f":{p}"), st.sampled_from([":", ":x", ":-1"]))
PATHS = st.one_of(st.text(max_size=40), st.integers(2000, 120_000).map(lambda n: "a" * n))
URLS = st.builds(lambda scheme, userinfo, host, port, path, tail: f"{scheme}://{userinfo}{host}{port}/{path}{tail}",
                 SCHEMES, USERINFO, st.one_of(IP_SPELLINGS, NAMES), PORTS, PATHS,
                 st.sampled_from(["", "?b=2&a=1", "#frag", "?q=%00", "?x=\r\nHost: evil"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(URLS)
@example("http://user:pw@127.0.0.1/a.png")
@example("http://[::ffff:169.254.169.254]/latest/meta-data")
@example("http://" + "a" * 100_000 + ".example/")
@example("javascript://127.0.0.1/%0aalert(1)")
def test_what_the_producer_accepts_the_worker_can_judge(raw: str) -> None:
    try:
        accepted = normalise_url(raw)
    except InvalidURL:
        return
    parts = urlsplit(accepted.url)
    assert parts.scheme in ("http", "https")
    assert "@" not in parts.netloc and parts.username is None and parts.password is None
    assert len(accepted.url) <= MAX_URL_LENGTH
    assert normalise_url(accepted.url) == accepted  # one canonical form
    try:  # the worker validates the stored URL again before any connection
        target = parse_target(accepted.url, MAX_URL_LENGTH)
    except FetchError as exc:
        assert exc.code == "bad_url"
        return
    assert target.scheme == parts.scheme
    try:  # and the guard either refuses the host or lets through public addresses only
        addresses = check_host(target.host, NO_DNS, GUARD)
    except FetchError as exc:
        assert exc.code in ("bad_url", "blocked_address", "dns_error")
    else:
        assert addresses and all(is_public_address(ip) for ip in addresses)


# ---- valid pixels, fuzzed metadata -------------------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_PNG = io.BytesIO()
Image.new("RGB", (24, 16), (40, 90, 160)).save(_PNG, "PNG")
PNG = _PNG.getvalue()
_JPEG = io.BytesIO()
Image.new("RGB", (24, 16), (40, 90, 160)).save(_JPEG, "JPEG")
JPEG = _JPEG.getvalue()
PNG_CHUNKS = st.sampled_from([b"eXIf", b"iCCP", b"tEXt", b"zTXt", b"iTXt", b"sRGB", b"gAMA", b"cHRM", b"pHYs",
                              b"caBX", b"acTL"])
JPEG_MARKERS = st.sampled_from([b"\xff\xe1", b"\xff\xe2", b"\xff\xed", b"\xff\xee", b"\xff\xfe", b"\xff\xeb"])


def _with_png_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    head, rest = PNG[:33], PNG[33:]  # signature + IHDR, then IDAT and IEND
    return head + b"".join(_chunk(kind, body) for kind, body in chunks) + rest


def _with_jpeg_segments(segments: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(marker + struct.pack(">H", len(data) + 2) + data for marker, data in segments)
    return JPEG[:2] + body + JPEG[2:]


def _decodes_or_refuses(data: bytes, container: str) -> None:
    try:
        image = decode_image(data, max_pixels=1_000_000)
    except DecodeError as exc:
        assert exc.code in ("not_an_image", "decode_error", "too_large")
    else:
        assert image.mode == "RGB" and image.size in ((24, 16), (16, 24))
    _provenance_holds(data, container)


def _provenance_holds(data: bytes, container: str) -> None:
    """Fuzzed metadata fails step by step, never the whole reading: the container is still known, and the evidence
    stays plain, bounded JSON that PostgreSQL's jsonb accepts (no NUL)."""
    result = extract_provenance(data)
    evidence = result.evidence
    assert result.summary in {s.value for s in ProvenanceSummary}
    text = json.dumps(evidence)
    assert json.loads(text) == evidence and "\\u0000" not in text, text[:500]
    errors = evidence.get("errors", [])
    assert not [e for e in errors if e.startswith("extract:")], errors  # an unexpected exception in the reader
    assert len(errors) <= MAX_ITEMS and len(evidence.get("fields", {})) <= MAX_ITEMS
    if evidence:
        assert evidence["format"] == container, evidence
    else:
        assert result.summary == ProvenanceSummary.NONE


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(PNG_CHUNKS, st.binary(max_size=600)), max_size=4))
def test_png_with_fuzzed_metadata_chunks(chunks: list[tuple[bytes, bytes]]) -> None:
    _decodes_or_refuses(_with_png_chunks(chunks), "png")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(JPEG_MARKERS, st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=600).map(lambda b: b"Exif\x00\x00II*\x00" + b),
    st.binary(max_size=600).map(lambda b: b"Exif\x00\x00MM\x00*" + b),
    st.binary(max_size=600).map(lambda b: b"ICC_PROFILE\x00\x01\x01" + b),
    st.binary(max_size=600).map(lambda b: b"http://ns.adobe.com/xap/1.0/\x00" + b),
)), max_size=4))
def test_jpeg_with_fuzzed_metadata_segments(segments: list[tuple[bytes, bytes]]) -> None:
    _decodes_or_refuses(_with_jpeg_segments(segments), "jpeg")
