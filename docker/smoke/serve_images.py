"""HTTP server of the stack's smoke run (scripts/stack.sh smoke): makes COUNT small images of
varied content and format, then serves them on PORT inside the compose network.

    python serve_images.py --count 24 --port 8000 [--host images] [--directory /tmp/smoke-images]

``/urls.txt`` (also DIRECTORY/urls.txt) lists their URLs as the producer will fetch them (``http://HOST:PORT/NAME``).
"""

from __future__ import annotations

import argparse
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"))


def make_image(index: int) -> Image.Image:
    """A 256x256 picture: a gradient, shapes and noise that differ with ``index``."""
    size = 256
    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    tint = Image.new("RGB", (size, size), ((index * 53) % 256, (index * 97) % 256, (index * 151) % 256))
    image = Image.blend(image, tint, 0.5)
    draw = ImageDraw.Draw(image)
    for shape in range(index % 7 + 1):
        x, y = (index * 31 + shape * 47) % size, (index * 17 + shape * 71) % size
        draw.ellipse((x - 30, y - 20, x + 30, y + 20), fill=((shape * 80) % 256, 200, (index * 40) % 256))
    noise = Image.effect_noise((size, size), 20 + index).convert("RGB")
    image = Image.blend(image, noise, 0.15)
    return image.filter(ImageFilter.GaussianBlur(index % 3))


def write_images(directory: Path, count: int, base_url: str) -> None:
    urls = []
    for index in range(count):
        suffix, pil_format = FORMATS[index % len(FORMATS)]
        name = f"{index:03d}.{suffix}"
        make_image(index).save(directory / name, pil_format)
        urls.append(f"{base_url}/{name}")
    (directory / "urls.txt").write_text("\n".join(urls) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="images", help="the name other containers reach this one by")
    parser.add_argument("--directory", type=Path, default=Path("/tmp/smoke-images"))
    args = parser.parse_args()
    directory = args.directory
    directory.mkdir(parents=True, exist_ok=True)
    write_images(directory, args.count, f"http://{args.host}:{args.port}")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    print(f"serving {args.count} images from {directory} on port {args.port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", args.port), handler).serve_forever()


if __name__ == "__main__":
    main()
