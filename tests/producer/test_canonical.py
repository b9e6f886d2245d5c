"""One image, one row: the spellings of a host and the tracking parameters that used to make their own rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidetect.urls import InvalidURL, Rejection, normalise_url
from fetch.errors import FetchError
from fetch.netguard import normalize_host
from tests.conftest import REPO_ROOT
from tests.httpserver.handlers import png_bytes
from tests.httpserver.server import LocalHTTPServer


@pytest.mark.parametrize("raw", [
    "http://example.com/a.jpg", "http://EXAMPLE.com./a.jpg", "http://example.com:80/a.jpg#top",
    "http://example.com/a.jpg?utm_source=news&utm_medium=email&UTM_Campaign=x",
    "http://example.com/a.jpg?fbclid=IwAR0&gclid=EAIa&mc_eid=12&mc_cid=34&msclkid=5&_ga=1.2&igshid=9",
])
def test_spellings_of_one_image_share_one_url(raw: str) -> None:
    assert normalise_url(raw).url == "http://example.com/a.jpg"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1",
                                  "0177.0.0.1", "0177.0.0.01", "127.0.0.1.", "0x7F.1"])
def test_every_ipv4_spelling_is_its_dotted_quad(host: str) -> None:
    assert normalise_url(f"http://{host}:8080/a.png").url == "http://127.0.0.1:8080/a.png"


def test_tracking_parameters_go_the_others_stay_in_order() -> None:
    assert normalise_url("http://e.example/a?z=1&utm_x=2&a=3&fbclid=4").url == "http://e.example/a?a=3&z=1"
    assert normalise_url("http://e.example/a?utm_x=2&fbclid=4", strip_tracking=False).url == \
        "http://e.example/a?fbclid=4&utm_x=2"
    assert normalise_url("http://e.example/a?ref=1&page=2").url == "http://e.example/a?page=2&ref=1"


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.0.0.1", "08.0.0.1", "example.123", "a..b", "-bad-.example"])
def test_hosts_the_guard_would_refuse_are_refused_here(host: str) -> None:
    with pytest.raises(InvalidURL) as info:
        normalise_url(f"http://{host}/a.png")
    assert info.value.reason is Rejection.NO_HOST
    with pytest.raises(FetchError):
        normalize_host(host)


hosts = st.one_of(
    st.from_regex(r"[a-zA-Z0-9]{1,8}(\.[a-zA-Z0-9]{1,8}){0,3}\.?", fullmatch=True),
    st.builds(lambda parts: ".".join(parts), st.lists(st.sampled_from(["0", "1", "127", "0x7f", "0177", "255",
                                                                       "4294967295", "0xff"]), min_size=1,
                                                      max_size=4)),
)


@settings(max_examples=400, deadline=None)
@given(hosts)
def test_the_producer_records_the_host_the_guard_fetches(host: str) -> None:
    """The producer's domain and the download guard's host are one function's answer, refusals included."""
    try:
        guarded: str | None = normalize_host(host)
    except FetchError:
        guarded = None
    try:
        recorded: str | None = normalise_url(f"http://{host}/x.png").domain
    except InvalidURL:
        recorded = None
    assert recorded == guarded


def test_one_download_for_every_spelling(tmp_path: Path, checkpoint_dir: Path) -> None:
    """``aidetect score`` over eight spellings of one loopback image: one row, one request."""
    with LocalHTTPServer() as server:
        server.serve("/a.png", png_bytes(9, 9, (1, 2, 3)), "image/png")
        port = server.port
        spellings = [f"http://{host}:{port}/a.png{query}" for host, query in [
            ("127.0.0.1", ""), ("127.1", ""), ("2130706433", ""), ("0x7f.0.0.1", ""), ("127.0.0.1.", ""),
            ("0177.0.0.1", "?utm_source=x"), ("127.0.0.1", "?fbclid=abc&gclid=def"), ("127.1", "#frag")]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_") and k != "DATABASE_URL"}
        env.update(AIDETECT_TORCH_THREADS="1", AIDETECT_CHECKPOINT=str(checkpoint_dir), PYTHONPATH=str(REPO_ROOT),
                   AIDETECT_ALLOWED_NETWORKS='["127.0.0.0/8"]')
        done = subprocess.run([sys.executable, "-m", "cli.main", "score", *spellings, "--format", "json"],
                              cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = json.loads(done.stdout)
        assert [(r["url"], r["status"]) for r in rows] == [(f"http://127.0.0.1:{port}/a.png", "done")]
        assert server.paths == ["/a.png"]
        kept = subprocess.run([sys.executable, "-m", "cli.main", "score", spellings[5], "--keep-query", "--format",
                               "json"], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300,
                              check=False)
        assert kept.returncode == 0, kept.stderr[-3000:]
        assert json.loads(kept.stdout)[0]["url"] == f"http://127.0.0.1:{port}/a.png?utm_source=x"
