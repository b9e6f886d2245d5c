"""Local files as fetch results: regular files within the limit, everything else a FetchError; web URLs go to the
safe fetcher that LocalFileFetcher wraps (a real one, against a real server on 127.0.0.1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fetch.client import SafeFetcher
from fetch.errors import FetchError
from fetch.local import LocalFileFetcher, read_local_file
from fetch.protocol import FetchResult
from tests.fetch.helpers import PNG, make_settings
from tests.httpserver.network import StaticResolver
from tests.httpserver.server import LocalHTTPServer

pytestmark = pytest.mark.usefixtures("guard")


def read_error(path: Path, max_bytes: int = 100) -> FetchError:
    with pytest.raises(FetchError) as info:
        read_local_file(path, max_bytes)
    assert not info.value.transient
    return info.value


def test_a_regular_file_within_the_limit_is_read(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    assert read_local_file(tmp_path / "a.png", len(PNG)) == PNG
    assert read_error(tmp_path / "a.png", len(PNG) - 1).code == "too_large"


def test_missing_special_and_unreadable_paths_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    assert read_error(tmp_path / "missing.png").code == "file_not_found"
    assert read_error(tmp_path / "pipe").code == "not_a_file"  # refused before it is opened: nothing blocks
    assert read_error(tmp_path).code == "not_a_file"
    assert read_error(Path("/dev/zero")).code == "not_a_file"
    assert read_error(Path(f"{tmp_path}/nul\0.png")).code == "file_error"


def test_file_urls_are_read_and_web_urls_downloaded(tmp_path: Path, server: LocalHTTPServer,
                                                    resolver: StaticResolver) -> None:
    (tmp_path / "a b.png").write_bytes(PNG)
    local = (tmp_path / "a b.png").as_uri()
    web = server.url("/a.png")
    with SafeFetcher(make_settings(), resolver=resolver) as inner:
        fetcher = LocalFileFetcher(inner, max_bytes=len(PNG))
        assert fetcher.fetch(local) == FetchResult(local, local, PNG, None, 200, 0)
        assert fetcher.fetch(web).content == PNG
        results = fetcher.fetch_many([web, (tmp_path / "gone.png").as_uri(), local, server.url("/nothing")])
    assert [type(r) for r in results] == [FetchResult, FetchError, FetchResult, FetchError]
    assert [getattr(r, "code", None) for r in results] == [None, "file_not_found", None, "http_404"]
    assert server.paths[0] == "/a.png"  # fetch_many downloads concurrently: the order of the last two is open
    assert sorted(server.paths[1:]) == ["/a.png", "/nothing"]
