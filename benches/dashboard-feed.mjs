// Driven by benches/dashboard-feed.sh: builds of a chatty app (forced, so that each runs its
// hook) with 0 and with N dashboard sockets open, alternating; medians.
import fs from 'node:fs';

const [address, tarPath, lines, clients, rounds] = process.argv.slice(2);
const token = process.env.WORKZ_API_TOKEN;
const archive = fs.readFileSync(tarPath);
const headers = { Authorization: `Bearer ${token}` };

async function build() {
  const started = performance.now();
  const response = await fetch(`http://${address}/api/builds?force=true`, {
    method: 'POST',
    headers: { ...headers, 'Content-Type': 'application/x-tar' },
    body: archive,
  });
  const { build_id: id } = await response.json();
  for (;;) {
    const result = await (await fetch(`http://${address}/api/builds/${id}`, { headers })).json();
    if (result.status) {
      if (result.status !== 'succeeded') throw new Error(JSON.stringify(result));
      return { id, duration: result.duration, wall: (performance.now() - started) / 1000 };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function open(n) {
  return Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://${address}/ws?token=${token}`);
      socket.counts = new Map();
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === 'build_event') {
          const id = message.record.build_id;
          socket.counts.set(id, (socket.counts.get(id) ?? 0) + 1);
        }
        if (message.type === 'hello') resolve(socket);
      };
      socket.onerror = reject;
    })),
  );
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
await build(); // warm-up
const alone = [];
const watched = [];
const received = [];
for (let round = 0; round < Number(rounds); round++) {
  for (const withClients of round % 2 ? [true, false] : [false, true]) {
    if (!withClients) {
      alone.push(await build());
      continue;
    }
    const sockets = await open(Number(clients));
    const result = await build();
    await new Promise((r) => setTimeout(r, 500)); // the last frames in flight
    watched.push(result);
    received.push(median(sockets.map((s) => s.counts.get(result.id) ?? 0)));
    for (const s of sockets) s.close();
  }
}
const rate = (runs) => Number(lines) / median(runs.map((r) => r.duration));
console.log(`a build whose hook prints ${lines} lines (each a log event), median of ${rounds}:`);
console.log('| dashboards connected | build duration | events/s | events per client |');
console.log('| --- | --- | --- | --- |');
console.log(`| none | ${median(alone.map((r) => r.duration)).toFixed(3)} s | ${Math.round(rate(alone))} | — |`);
console.log(`| ${clients} WebSocket clients | ${median(watched.map((r) => r.duration)).toFixed(3)} s | ${Math.round(rate(watched))} | ${median(received)} |`);
console.log(`slowdown with the clients: ${(median(watched.map((r) => r.duration)) / median(alone.map((r) => r.duration))).toFixed(2)}×`);
