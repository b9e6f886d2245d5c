"""Checks of the stack's smoke run, run inside the compose network (scripts/stack.sh smoke).

    python probe.py flower URL USER:PASSWORD NODE_PREFIX   Flower refuses requests without the
                                                           login and lists a worker NODE_PREFIX*
    python probe.py metrics URL                            the exporter serves aidetect_* series

Prints what it saw; exit status 0 when the check holds, 1 when not.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request


def fetch(url: str, login: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if login is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_flower(url: str, login: str, node_prefix: str) -> bool:
    anonymous, _ = fetch(f"{url}/api/workers")
    status, body = fetch(f"{url}/api/workers?refresh=1", login)
    workers = sorted(json.loads(body)) if status == 200 else []
    print(f"flower: without login {anonymous}, with login {status}, workers {workers}")
    return anonymous == 401 and any(name.startswith(node_prefix) for name in workers)


def check_metrics(url: str) -> bool:
    status, body = fetch(url)
    series = [line for line in body.decode(errors="replace").splitlines() if line.startswith("aidetect_")]
    print(f"metrics: status {status}, {len(series)} aidetect_* samples")
    for line in series[:8]:
        print(f"  {line}")
    return status == 200 and bool(series)


def main(argv: list[str]) -> int:
    if argv[:1] == ["flower"] and len(argv) == 4:
        return 0 if check_flower(*argv[1:]) else 1
    if argv[:1] == ["metrics"] and len(argv) == 2:
        return 0 if check_metrics(argv[1]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
