#!/usr/bin/env bash
# Redraws the web UI screenshots in docs/images with headless Chromium: a sweep on
# the built-in simulator, an evalscope 1.14.1 run beside it, `perfscope serve
# --allow-run` on them, and the live page of a run while it goes.
# Usage: scripts/web_screenshots.sh   (from the repository root; needs chromium)
set -euo pipefail
cargo build --release
bin=target/release/perfscope
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
shot() { # URL FILE HEIGHT
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1280,"$3" --virtual-time-budget=8000 --screenshot="$2" "$1" 2>/dev/null
}
"$bin" perf --api sim --parallel 1 4 8 --number 40 160 320 --name sweep-a \
  --outputs-dir "$out" --server-metrics-interval 0.5 >/dev/null
"$bin" perf --api sim --parallel 1 4 8 --number 40 160 320 --name sweep-b \
  --outputs-dir "$out" --server-metrics-interval 0.5 >/dev/null
mkdir -p "$out/20260101_120000"
cp -r tests/fixtures/evalscope_1_14_1/chat "$out/20260101_120000/evalscope-chat"
"$bin" serve --outputs "$out" --port 19090 --allow-run >"$out/serve.log" 2>&1 &
sleep 1
token=$(grep -o 'token=[0-9a-f]*' "$out/serve.log" | head -1)
ids=$(curl -s http://127.0.0.1:19090/api/runs | python3 -c '
import json, sys, urllib.parse
runs = [r for r in json.load(sys.stdin) if r["name"].startswith("sweep")]
print(" ".join(urllib.parse.quote(r["id"], safe="") for r in runs))')
set -- $ids
shot "http://127.0.0.1:19090/" docs/images/web-history.png 700
shot "http://127.0.0.1:19090/#run=$1" docs/images/web-run.png 2600
shot "http://127.0.0.1:19090/#compare=$2,$1" docs/images/web-compare.png 1400
curl -s -H "Authorization: Bearer ${token#token=}" -d '{"api":"sim","parallel":"2","number":"200","name":"from-the-page"}' \
  http://127.0.0.1:19090/api/jobs >/dev/null
sleep 3
shot "http://127.0.0.1:19090/#start&$token" docs/images/web-start.png 900
"$bin" perf --api sim --parallel 4 --number 100000 --duration 40 --outputs-dir "$out" \
  --metrics-addr 127.0.0.1:19091 --snapshot-interval 2 >/dev/null 2>&1 &
sleep 9
shot "http://127.0.0.1:19091/?updates=8" docs/images/web-live.png 1250
echo "screenshots written to docs/images"
