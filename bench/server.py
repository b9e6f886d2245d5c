"""The benchmark's image server: a subprocess that serves files from memory on 127.0.0.1.

``python -m bench.server LIST_FILE --max-seconds S`` reads the files named in LIST_FILE (one path a line),
serves the k-th at ``/i/<k>`` (HTTP/1.1, keep-alive, Content-Type from the format Pillow's plugins sniff), prints
``{"port": P}`` on stdout once listening, and stops on SIGTERM, when stdin closes, or after ``max_seconds``.

It runs in its own process so that serving does not share the interpreter lock of what is being measured.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from aidetect.image_formats import sniff


def content_type(data: bytes) -> str:
    """The media type of the format ``data`` is in (:func:`aidetect.image_formats.sniff`), or a generic one."""
    fmt = sniff(data).format
    return Image.MIME.get(fmt, "application/octet-stream") if fmt else "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    disable_nagle_algorithm = True  # no delayed-ACK stalls between the head and the body
    bodies: list[tuple[bytes, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        index = self.path.rsplit("/", 1)[-1]
        if not (self.path.startswith("/i/") and index.isdigit() and int(index) < len(self.bodies)):
            self.send_error(404)
            return
        body, kind = self.bodies[int(index)]
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\n\r\n").encode("ascii")
        self.wfile.write(head + body)  # one write: head and body leave together

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up at the end of a run are normal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("list_file", type=Path)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    paths = [Path(line) for line in args.list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    bodies = [p.read_bytes() for p in paths]
    _Handler.bodies = [(b, content_type(b)) for b in bodies]
    server = _Server(("127.0.0.1", 0), _Handler)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes the pipe or dies
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "files": len(bodies)}), flush=True)
    stop.wait(args.max_seconds)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
