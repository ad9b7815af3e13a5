// BullMQ's side of benches/queue.sh: no-op jobs added (64 in flight) and processed by one
// Worker with the given concurrency, on the same Redis; prints jobs per second, enqueue to
// completion. Usage: node bullmq-queue.cjs PORT JOBS CONCURRENCY
const { Queue, Worker } = require('bullmq');

async function main() {
  const [port, jobs, concurrency] = process.argv.slice(2).map(Number);
  const connection = { host: '127.0.0.1', port };
  const name = `bench-${process.pid}-${Date.now()}`;
  const queue = new Queue(name, { connection });
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const worker = new Worker(name, async () => {}, { connection, concurrency });
  worker.on('completed', () => { if (++done === jobs) finish(); });
  await worker.waitUntilReady();
  await queue.waitUntilReady();
  const started = performance.now();
  let next = 0;
  const adder = async () => {
    while (next < jobs) {
      const i = next++;
      await queue.add('noop', { i });
    }
  };
  await Promise.all(Array.from({ length: 64 }, adder));
  await finished;
  const seconds = (performance.now() - started) / 1000;
  console.log(Math.round(jobs / seconds));
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
