#!/usr/bin/env bash
# stagehand and sharp (libvips, what a NestJS team would use) on the same 12-megapixel JPEG, in
# one run, one thread each. Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --bench image_thumbnail --no-run -q
input=target/bench-12mp.jpg
for round in 1 2; do
  cargo bench -q --bench image_thumbnail -- "$input" | grep -v '^input'
  (cd benches/images && npm install --silent --no-audit --no-fund >/dev/null && UV_THREADPOOL_SIZE=1 node sharp.mjs "../../$input")
done
