#!/usr/bin/env bash
# Redis's side of the throughput workload, counted in instructions (valgrind's callgrind), which
# unlike jobs/s does not move with the machine's load: one round of benches/redis_store.rs
# (20,000 jobs added in bulks of 1,000, then processed with concurrency 50) for stagehand and
# for BullMQ, each on a fresh `redis-server` (AOF on) run under callgrind.
# Needs valgrind, node and npm. Takes a few minutes (the server runs about 50 times slower).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench redis_store --no-run
bin=$(ls -t target/release/deps/redis_store-* | grep -v '\.d$' | head -1)
(cd benches/bullmq && npm install --silent --no-audit --no-fund >/dev/null)

count() { # $1: label; the rest: the command that runs the workload against $REDIS_URL
  local label=$1; shift
  local dir port pid
  dir=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" redis-server --port "$port" \
    --bind 127.0.0.1 --save "" --appendonly yes --dir "$dir" --logfile "$dir/redis.log" \
    >"$dir/valgrind.log" 2>&1 &
  pid=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.2; done
  REDIS_URL="redis://127.0.0.1:$port" BENCH_ROUNDS=1 BENCH_ONLY=throughput "$@" >/dev/null
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" || true
  local total
  total=$(awk '/^totals:/ {print $2}' "$dir/cg.out")
  rm -rf "$dir"
  printf '%-9s redis-server instructions: %6.2f G for 20,000 jobs, %4.0f k per job\n' \
    "$label" "$(echo "$total / 1000000000" | bc -l)" "$(echo "$total / 20000 / 1000" | bc -l)"
}

count stagehand "$bin"
count bullmq bash -c 'cd benches/bullmq && node bench.mjs'
