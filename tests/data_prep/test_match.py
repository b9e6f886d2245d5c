"""Stage 3: captions matched to Midjourney prompts (known best matches), images fetched by the safe fetcher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aidetect.settings import Settings
from fetch.client import SafeFetcher
from tests.data_prep.helpers import write_csv
from tests.httpserver.handlers import image_reply
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer
from tests.image_factory import encode, noise_image, png
from training.dataprep.index import clean_prompt, read_index
from training.dataprep.match import MatchConfig, assign, match_midjourney, tfidf_top_k
from training.dataprep.table import read_jsonl, read_table

CAPTIONS = {
    "dog": "a dog running on the beach",
    "car": "a red sports car parked on a city street",
    "fruit": "a bowl of fruit on a wooden table",
    "mountain": "a snowy mountain at sunrise",
    "cat": "a cat sleeping on a sofa",  # nothing in the collection is like it
}


class NoFetcher:
    """A :class:`fetch.protocol.Fetcher` that fails the test when asked for anything."""

    def fetch(self, url):  # type: ignore[no-untyped-def]
        raise AssertionError(f"fetched {url} again")

    def fetch_many(self, urls, max_workers=None):  # type: ignore[no-untyped-def]
        raise AssertionError(f"fetched {urls} again")


def test_clean_prompt_drops_parameters_links_and_markup() -> None:
    assert clean_prompt("a cat in space --ar 16:9 --v 5.1 --q 2") == "a cat in space"
    assert clean_prompt("**https://s.mj.run/abc a red fox, forest --no text --tile** - Image #1 <@123>") \
        == "a red fox, forest"
    assert clean_prompt("cyberpunk city::2 neon --stylize 750") == "cyberpunk city 2 neon"


def test_index_columns_are_recognised(tmp_path: Path) -> None:
    index = tmp_path / "mj.jsonl"
    lines = [{"id": "m1", "content": "**a red fox --v 5** - <@1>", "Attachments": json.dumps(["https://x.test/1.png"])},
             {"id": "m2", "content": "a red fox --v 5", "Attachments": json.dumps(["https://x.test/1.png"])},
             {"id": "m3", "content": "--ar 1:1", "Attachments": json.dumps(["https://x.test/3.png"])},
             {"id": "m4", "content": "a castle", "Attachments": "imgs/4.png", "version": "midjourney-v6"}]
    index.write_text("\n".join(json.dumps(line) for line in lines))
    items = read_index(index)
    assert [(i.key, i.prompt, i.is_url) for i in items] == [("m1", "a red fox", True), ("m4", "a castle", False)]
    assert items[1].ref == str(tmp_path / "imgs" / "4.png") and items[1].generator == "midjourney-v6"
    assert items[0].generator == "midjourney"


def test_tfidf_finds_the_written_best_matches() -> None:
    prompts = ["portrait of a cyberpunk samurai, neon lights", "snowy mountain peak at sunrise, dramatic clouds",
               "vintage red sports car on a rainy city street at night", "golden retriever dog running on a beach",
               "still life, bowl of fresh fruit on a rustic wooden table"]
    captions = list(CAPTIONS.values())
    columns, scores = tfidf_top_k(captions, prompts, k=3)
    assert list(columns[:4, 0]) == [3, 2, 4, 1]
    pairs = assign(columns, scores, min_similarity=0.2)
    assert sorted((p.row, p.column) for p in pairs) == [(0, 3), (1, 2), (2, 4), (3, 1)]  # the cat stays alone


def test_assignment_is_one_to_one_and_hungarian_beats_greedy() -> None:
    # caption 0: prompt 7 (0.9) or 8 (0.8); caption 1: prompt 7 (0.85) or 8 (0.1)
    columns = np.array([[7, 8], [7, 8]])
    scores = np.array([[0.9, 0.8], [0.85, 0.1]])
    greedy = assign(columns, scores, min_similarity=0.05, method="greedy")
    hungarian = assign(columns, scores, min_similarity=0.05, method="hungarian")
    assert sorted((p.row, p.column) for p in greedy) == [(0, 7), (1, 8)]  # total 1.0
    assert sorted((p.row, p.column) for p in hungarian) == [(0, 8), (1, 7)]  # total 1.65
    assert assign(columns, scores, min_similarity=0.2, method="greedy") == assign(
        columns, scores, min_similarity=0.2, method="greedy")
    only_strong = assign(columns, scores, min_similarity=0.5, method="greedy")
    assert [(p.row, p.column) for p in only_strong] == [(0, 7)]


@pytest.fixture
def captions(tmp_path: Path) -> Path:
    rows = [{"path": f"/photos/{key}.jpg", "label": "real", "family": "real", "source": f"src-{key}",
             "split": "", "content_sha256": f"{i:02d}" * 32, "caption": text}
            for i, (key, text) in enumerate(CAPTIONS.items())]
    return write_csv(tmp_path / "captions.csv", rows)


def test_match_fetches_rematches_and_resumes(captions: Path, tmp_path: Path) -> None:
    collection = tmp_path / "mj"
    (collection / "imgs").mkdir(parents=True)
    (collection / "imgs" / "dog.png").write_bytes(png(seed=1, width=64, height=48))
    (collection / "imgs" / "samurai.png").write_bytes(png(seed=2))
    with loopback_only(), LocalHTTPServer() as server:
        server.route("/car.webp", image_reply(encode(noise_image(80, 60, seed=3), "WEBP"), "image/webp"))
        server.route("/mountain.jpg", image_reply(encode(noise_image(70, 50, seed=4), "JPEG"), "image/jpeg"))
        server.route("/apples.png", image_reply(png(seed=5)))
        # /fruit.png is not served: 404, so the fruit caption falls back to the apples
        write_csv(collection / "index.csv", [
            {"prompt": "portrait of a cyberpunk samurai, neon lights --ar 2:3 --v 5", "path": "imgs/samurai.png"},
            {"prompt": "golden retriever dog running on a sunny beach --ar 16:9 --v 5.1", "path": "imgs/dog.png"},
            {"prompt": "**vintage red sports car on a city street --v 4** - Image #2 <@1>",
             "path": server.url("/car.webp")},
            {"prompt": "still life, bowl of fresh fruit on a rustic wooden table --q 2",
             "path": server.url("/fruit.png")},
            {"prompt": "bowl of apples on a wooden kitchen table", "path": server.url("/apples.png")},
            {"prompt": "snowy mountain peak at sunrise, dramatic clouds --ar 3:2", "path": server.url("/mountain.jpg")},
        ])
        fetcher = SafeFetcher(Settings(allowed_networks=["127.0.0.0/8"]))
        config = MatchConfig(captions=str(captions), index=str(collection / "index.csv"), out_dir=str(tmp_path / "out"))
        result = match_midjourney(config, fetcher=fetcher)

    rows = read_table(result.manifest).rows
    by_caption = {r["caption"]: r for r in rows}
    assert (result.total, result.matched, result.unmatched, result.failed_fetches) == (4, 4, 1, 1)
    assert by_caption[CAPTIONS["dog"]]["origin_path"] == str(collection / "imgs" / "dog.png")
    assert by_caption[CAPTIONS["car"]]["origin_path"].endswith("/car.webp")
    assert by_caption[CAPTIONS["fruit"]]["origin_path"].endswith("/apples.png")  # second round
    assert by_caption[CAPTIONS["mountain"]]["orig_format"] == "JPEG"
    assert CAPTIONS["cat"] not in by_caption
    assert len({r["midjourney_id"] for r in rows}) == len(rows)  # no image used twice
    car = by_caption[CAPTIONS["car"]]
    assert (car["family"], car["label"], car["source"], car["orig_format"], car["orig_width"]) == (
        "midjourney", "ai", "src-car", "WEBP", "80")
    assert car["prompt"].startswith("**vintage red sports car") and float(car["similarity"]) >= 0.2
    assert all((tmp_path / "out" / r["path"]).suffix == ".jpg" for r in rows)
    [failure] = read_jsonl(tmp_path / "out" / "failures.jsonl")
    assert (failure["code"], failure["transient"]) == ("http_404", False)

    again = match_midjourney(config, fetcher=NoFetcher())  # done captions and the 404 are not tried again
    assert (again.matched, again.total, again.unmatched) == (0, 4, 1)
