#!/usr/bin/env bash
# Side by side on one redis-server (AOF on, as in production): BullMQ 5 (node) and stagehand,
# each on the workload of benches/redis_store.rs. Needs node, npm and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --dir "$dir" --daemonize yes --logfile "$dir/redis.log"
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
export REDIS_URL="redis://127.0.0.1:$port"
(cd benches/bullmq && npm install --silent --no-audit --no-fund >/dev/null && node bench.mjs)
cargo bench --bench redis_store
