#!/usr/bin/env bash
# Proves the README's first command as a new user meets it: a clean clone of this repository, a fresh venv
# with no extras, and the command exactly as README.md's first code block writes it, with its two example
# arguments replaced by a folder of test images and by `-` (loopback URLs on stdin). Then checks that every
# image and every URL has a verdict row in the SQLite database the command created.
# Usage: scripts/readme_check.sh   (PYTHON: an interpreter with Pillow, default .venv/bin/python)
# One line per step with its time; any failure stops with the step's last output lines.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/readme_check.XXXXXX")"
log="$work/step.log"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  if [ "${KEEP_README_CHECK:-0}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

step() {  # step "what" command...: one line with the step's time; on failure the output's last lines
  local what="$1"; shift
  printf 'readme check: %s ... ' "$what"
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then
    echo "ok ($((SECONDS - start)) s)"
  else
    echo "FAILED ($((SECONDS - start)) s)"
    echo "readme check: FAILED at '$what'; its last output lines:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

readme_command() {  # the first command line of README.md's first code block, checked against its known shape
  local line
  line="$(awk '/^```/{n++; next} n==1 && !/^[[:space:]]*(#|$)/{print; exit}' "$repo/README.md")"
  case "$line" in
    "bash scripts/setup.sh && .venv/bin/aidetect score "*) printf '%s\n' "$line" ;;
    *) echo "README.md's first command is not 'bash scripts/setup.sh && .venv/bin/aidetect score ...' any more:" \
         "$line (update scripts/readme_check.sh with the README)" >&2
       return 1 ;;
  esac
}

make_images() {  # make_images DIR SEED: one JPEG, PNG and WebP photo-like image (noise over a gradient)
  "$python" - "$1" "$2" <<'EOF'
import random, sys
from pathlib import Path
from PIL import Image, ImageFilter
folder, seed = Path(sys.argv[1]), int(sys.argv[2])
folder.mkdir(parents=True, exist_ok=True)
for i, (name, fmt) in enumerate([("photo.jpg", "JPEG"), ("nested/chart.png", "PNG"), ("frame.webp", "WEBP")]):
    rng = random.Random(seed * 10 + i)
    noise = Image.effect_noise((320, 240), 40 + 10 * i).convert("RGB").filter(ImageFilter.GaussianBlur(1))
    tint = Image.new("RGB", (320, 240), tuple(rng.randrange(256) for _ in range(3)))
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    Image.blend(noise, tint, 0.5).save(folder / name, fmt)
EOF
}

start_server() {  # a python http.server on a free loopback port serving $work/web; writes the URLs to urls.txt
  local port
  port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$python" -m http.server --bind 127.0.0.1 --directory "$work/web" "$port" >"$work/http.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 50); do
    if "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/photo.jpg', timeout=1)" \
        2>/dev/null; then
      (cd "$work/web" && find . -type f | sort | sed "s|^\./|http://127.0.0.1:$port/|") >"$work/urls.txt"
      cat "$work/urls.txt"
      return 0
    fi
    sleep 0.2
  done
  echo "the http.server on 127.0.0.1:$port did not answer" >&2
  return 1
}

run_readme_command() {  # the README's line, with its example arguments replaced by our folder and stdin
  local command="$1"
  command="${command% path/to/folder-or-image.jpg https://example.com/picture.png}"
  [ "$command" != "$1" ] || { echo "README's example arguments changed: $1" >&2; return 1; }
  echo "running in $work/clone: $command $work/photos - < urls.txt"
  (cd "$work/clone" && env -u DATABASE_URL -u VIRTUAL_ENV AIDETECT_ALLOWED_NETWORKS=127.0.0.0/8 \
     bash -c "$command \"\$0\" -" "$work/photos" <"$work/urls.txt")
}

check_verdicts() {  # every image file and URL is a row in ./aidetect.db with a verdict
  "$python" - "$work/clone/aidetect.db" "$work/photos" "$work/urls.txt" <<'EOF'
import sqlite3, sys
from pathlib import Path
from urllib.parse import unquote, urlsplit
db, photos, urls = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
expected = {p.resolve().as_uri() for p in photos.rglob("*") if p.is_file()}
expected |= {line.strip() for line in urls.read_text().splitlines() if line.strip()}
rows = sqlite3.connect(db).execute(
    "SELECT i.url, i.status, i.error_code, v.label, v.p_ai FROM images i "
    "LEFT JOIN verdicts v ON v.image_id = i.id").fetchall()
def key(url):  # file URLs compared as resolved paths
    return Path(unquote(urlsplit(url).path)).resolve().as_uri() if url.startswith("file:") else url
found = {key(url): (status, code, label, p_ai) for url, status, code, label, p_ai in rows}
missing = [u for u in sorted(expected) if u not in found or found[u][2] is None]
for url in sorted(expected):
    print(url, found.get(url, "no row"))
if missing:
    sys.exit(f"{len(missing)} of {len(expected)} inputs have no verdict row: {missing}")
print(f"{len(expected)} inputs, {len(expected)} verdict rows")
EOF
}

echo "readme check: working in $work"
command="$(readme_command)"
step "cloning $repo (HEAD $(git -C "$repo" rev-parse --short HEAD))" git clone -q --no-hardlinks "$repo" "$work/clone"
step "writing 3 test images (JPEG, PNG, WebP) to a folder" make_images "$work/photos" 1
step "writing 3 more to a folder served over loopback" make_images "$work/web" 2
step "starting python -m http.server on 127.0.0.1" start_server
step "running the README's first command (setup with no extras, then score)" run_readme_command "$command"
tail -n 15 "$log" | sed 's/^/  | /'
step "checking a verdict row for each of the 6 inputs in ./aidetect.db" check_verdicts
echo "readme check: passed"
