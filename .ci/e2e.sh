#!/usr/bin/env bash
# Browser end-to-end test: the real todo-stack binary, the page it serves at /, and headless
# Chromium (Debian's package) driven by playwright-core. Installs what it needs; leaves a
# screenshot in target/e2e/. Usage: e2e.sh PATH-TO-todo-stack
set -euo pipefail
bin=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/gateway/web"

if ! command -v chromium >/dev/null; then
  echo "installing chromium (Debian)"
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; })
fi
chromium --version

# The page must be the one the sources build: rebuild it and compare with what is embedded.
bash "$web/build.sh"
if ! git -C "$root" diff --quiet -- gateway/web/dist; then
  echo "gateway/web/dist/app.js is stale: run gateway/web/build.sh and commit the result"
  git -C "$root" diff --stat -- gateway/web/dist
  exit 1
fi

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" --data-dir "$work/data" --auth-listen-addr 127.0.0.1:0 --task-listen-addr 127.0.0.1:0 \
  --gateway-listen-addr 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 1 100); do [ "$(wc -l <"$work/out")" -ge 4 ] && break; sleep 0.1; done
gateway=$(awk '$1 == "gateway" { print $2 }' "$work/out")
mkdir -p "$root/target/e2e"
(cd "$web" && node e2e.mjs "http://$gateway" "$root/target/e2e/todo.png")
echo "screenshot: target/e2e/todo.png"
