// BullMQ on the workload of benches/redis_store.rs: add 20,000 no-op jobs with addBulk in
// batches of 1,000, process them with concurrency 50 (5 rounds, median), then enqueue-to-start
// latency at 1,000 jobs/s. Usage: REDIS_URL=redis://127.0.0.1:PORT node bench.mjs
import { Queue, Worker } from 'bullmq';

const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const JOBS = 20000, BATCH = 1000, CONCURRENCY = 50, RATE_SECONDS = 5;
// BENCH_ROUNDS and BENCH_ONLY (throughput or latency) as in benches/redis_store.rs.
const ROUNDS = Number(process.env.BENCH_ROUNDS) > 0 ? Number(process.env.BENCH_ROUNDS) : 5;
const ONLY = process.env.BENCH_ONLY ?? '';
const opts = { removeOnComplete: true, attempts: 3, backoff: { type: 'exponential', delay: 1000 } };

async function throughputRound(name) {
  const queue = new Queue(name, { connection });
  await queue.obliterate({ force: true });
  let start = performance.now();
  for (let b = 0; b < JOBS / BATCH; b++) {
    const jobs = [];
    for (let i = 0; i < BATCH; i++) jobs.push({ name: 'noop', data: { n: b * BATCH + i }, opts });
    await queue.addBulk(jobs);
  }
  const added = performance.now() - start;
  let done = 0;
  start = performance.now();
  const finished = new Promise((resolve) => {
    const worker = new Worker(name, async () => null, { connection, concurrency: CONCURRENCY });
    worker.on('completed', () => { if (++done === JOBS) resolve(worker); });
  });
  const worker = await finished;
  const processed = performance.now() - start;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return { add: JOBS / added * 1000, process: JOBS / processed * 1000 };
}

// The median of ROUNDS rounds, each on a fresh queue, with the range: one round takes about a
// second, short enough for the machine's noise to move it.
async function throughput() {
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await throughputRound(`bullmq-throughput-${r}`));
  const show = (key) => {
    const v = rounds.map((x) => x[key]).sort((a, b) => a - b);
    const k = (x) => `${(x / 1000).toFixed(1)}k`;
    return `${Math.round(v[Math.floor(v.length / 2)]).toString().padStart(8)} jobs/s median of ${ROUNDS} (${k(v[0])}..${k(v[v.length - 1])})`;
  };
  console.log(`bullmq    add_bulk: ${show('add')}, ${JOBS} jobs in batches of ${BATCH}`);
  console.log(`bullmq    process:  ${show('process')}, concurrency ${CONCURRENCY}`);
}

async function latency() {
  const queue = new Queue('bullmq-latency', { connection });
  await queue.obliterate({ force: true });
  const lat = [];
  const total = RATE_SECONDS * 1000;
  const finished = new Promise((resolve) => {
    const worker = new Worker('bullmq-latency', async (job) => {
      lat.push(performance.timeOrigin + performance.now() - job.data.t);
      if (lat.length === total) resolve(worker);
      return null;
    }, { connection, concurrency: CONCURRENCY });
  });
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await queue.add('ping', { t: performance.timeOrigin + performance.now() }, { removeOnComplete: true });
  }
  const worker = await finished;
  await worker.close();
  await queue.close();
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))].toFixed(2);
  console.log(`bullmq    latency:  p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms (${lat.length} jobs at 1,000/s)`);
}

if (ONLY !== 'latency') await throughput();
if (ONLY !== 'throughput') await latency();
process.exit(0);
