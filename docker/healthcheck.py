#!/usr/bin/env python
"""Container healthchecks: exit 0 when healthy, 1 when not, 2 on a usage error.

    aidetect-healthcheck celery NODE [--app MODULE]   this container's Celery worker answers a
                                                      ping (NODE as given to `celery worker -n`;
                                                      %h is this host's name)
    aidetect-healthcheck http URL                     URL answers with a status below 400
    aidetect-healthcheck broker                       the broker accepts a connection

``--timeout S`` (default 8) bounds each check; compose gives the whole healthcheck 30 s, as the
interpreter's start and imports alone took 7 to 20 s on two loaded cores.
"""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
import urllib.request


def check_celery(node: str, app_module: str, timeout_s: float) -> bool:
    from celery.app.utils import find_app

    app = find_app(app_module, imp=importlib.import_module)
    node = node.replace("%h", socket.gethostname())
    replies = app.control.ping(destination=[node], timeout=timeout_s)
    return any(node in reply for reply in replies)


def check_http(url: str, timeout_s: float) -> bool:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.status < 400


def check_broker(timeout_s: float) -> bool:
    from aidetect.celery_app import app
    from aidetect.queues import read_depths

    read_depths(app, timeout_s=timeout_s)
    return True


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aidetect-healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=8.0)
    checks = parser.add_subparsers(dest="check", required=True)
    celery = checks.add_parser("celery")
    celery.add_argument("node")
    celery.add_argument("--app", default="aidetect.celery_app")
    checks.add_parser("http").add_argument("url")
    checks.add_parser("broker")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> bool:
    if args.check == "celery":
        return check_celery(args.node, args.app, args.timeout)
    if args.check == "http":
        return check_http(args.url, args.timeout)
    return check_broker(args.timeout)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        healthy = run(args)
    except Exception as exc:  # any failure to answer is unhealthy
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("healthy" if healthy else "unhealthy: no answer", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
