#!/usr/bin/env bash
# The benchmark, from a fresh machine: installs the independent load tools (h2load from
# nghttp2-client, wrk) and nginx (a reference proxy for the gateway's lines) when they are
# missing, starts the local PostgreSQL when it is not running, builds the release binaries and
# runs todo-bench with the arguments given (default: both databases). See
# `target/release/todo-bench --help`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v h2load >/dev/null || ! command -v wrk >/dev/null \
  || ! { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then
  echo "==> installing h2load (nghttp2-client), wrk and nginx"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client wrk nginx >/dev/null
fi

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--database both)
if [[ " ${args[*]} " != *" --database sqlite "* ]] && command -v pg_isready >/dev/null \
  && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "==> starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

echo "==> building the release binaries"
cargo build --release --locked --workspace --bins
exec target/release/todo-bench "${args[@]}"
