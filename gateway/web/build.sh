#!/usr/bin/env bash
# Rebuilds the browser client: TypeScript generated from ../../proto (protoc-gen-es through
# buf), bundled by esbuild into dist/app.js. The gateway embeds index.html and dist/app.js, so
# `cargo build` needs no npm; run this after changing the contracts or src/.
set -euo pipefail
cd "$(dirname "$0")"
# `npm ci` refuses lock files whose optional per-platform packages it did not record.
npm install --no-audit --no-fund --silent
rm -rf src/gen
npx buf generate
npx esbuild src/main.ts --bundle --format=esm --target=es2022 --minify --legal-comments=none \
  --outfile=dist/app.js --log-level=warning
echo "built $(wc -c < dist/app.js) bytes into dist/app.js"
