"""The naive single-process loop, the script a user would write first: for each URL in turn, download, decode,
run the torch model at batch 1, write and commit (:class:`bench.naive.NaiveScorer`).

``python -m bench.naive_loop ROWS_FILE`` reads ``<image id> <url>`` lines (rows the harness created), loads the
model, runs one warm-up forward pass, then scores every row in order and prints one JSON line:
``{"seconds": ..., "cpu_seconds": ..., "images": ..., "done": ..., "peak_rss_mib": ...}`` (wall and CPU seconds
from the first download to the last commit; peak RSS of this process).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from bench.naive import NaiveScorer


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rows = [line.split(" ", 1) for line in Path(args[0]).read_text(encoding="utf-8").splitlines() if line.strip()]
    scorer = NaiveScorer.load("naive-loop")
    scorer.detector.predict([Image.new("RGB", (256, 256))])  # lazy initialisation is not measured
    statuses: Counter[str] = Counter()
    started, cpu_started = time.perf_counter(), time.process_time()
    for image_id, url in rows:
        statuses[scorer.score(int(image_id), url)] += 1
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "images": len(rows), "done": statuses["done"],
                      "peak_rss_mib": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
