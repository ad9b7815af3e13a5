// Driven by benches/dashboard-feed.sh: builds (forced, so that each runs in full) with 0 and
// with N dashboard sockets open, alternating; medians.
import fs from 'node:fs';
import path from 'node:path';

const [address, dir, lines, clients, rounds] = process.argv.slice(2);
const token = process.env.WORKZ_API_TOKEN;
const archive = (name) => fs.readFileSync(path.join(dir, name));
const [chatty, paced, site] = [archive('app.tar'), archive('paced.tar'), archive('static.tar')];
const headers = { Authorization: `Bearer ${token}` };

async function submit(body) {
  const response = await fetch(`http://${address}/api/builds?force=true`, {
    method: 'POST',
    headers: { ...headers, 'Content-Type': 'application/x-tar' },
    body,
  });
  return (await response.json()).build_id;
}

async function result(id) {
  for (;;) {
    const body = await (await fetch(`http://${address}/api/builds/${id}`, { headers })).json();
    if (body.status) {
      if (body.status !== 'succeeded') throw new Error(JSON.stringify(body));
      return body;
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
        const data = JSON.parse(event.data);
        for (const message of Array.isArray(data) ? data : [data]) {
          if (message.type === 'build_event') {
            const id = message.record.build_id;
            socket.counts.set(id, (socket.counts.get(id) ?? 0) + 1);
          }
          if (message.type === 'hello') resolve(socket);
        }
      };
      socket.onerror = reject;
    })),
  );
}

// CPU seconds the service has used (utime + stime of /proc/<pid>/stat, 100 ticks a second).
const serviceCpu = () => {
  const fields = fs.readFileSync(`/proc/${process.env.SERVE_PID}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const clientCpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// The 1,000-page site built again and again while the paced build streams its events.
async function pacedRound() {
  const stream = await submit(paced);
  const durations = [];
  let streaming = true;
  const ended = result(stream).then((r) => { streaming = false; return r; });
  await new Promise((r) => setTimeout(r, 500)); // the stream under way
  while (streaming) durations.push((await result(await submit(site))).duration);
  const r = await ended;
  return { stream, durations, rate: 60000 / r.duration };
}

async function burstRound() {
  const id = await submit(chatty);
  return { stream: id, durations: [(await result(id)).duration] };
}

await result(await submit(site)); // warm-up
const table = [];
for (const [name, round] of [['paced', pacedRound], ['burst', burstRound]]) {
  const alone = [];
  const watched = [];
  const received = [];
  const cpu = { none: { service: 0, clients: 0, wall: 0 }, watched: { service: 0, clients: 0, wall: 0 } };
  for (let i = 0; i < Number(rounds); i++) {
    for (const withClients of i % 2 ? [true, false] : [false, true]) {
      const sockets = withClients ? await open(Number(clients)) : [];
      const [s0, c0, w0] = [serviceCpu(), clientCpu(), performance.now()];
      const r = await round();
      const spent = cpu[withClients ? 'watched' : 'none'];
      spent.service += serviceCpu() - s0;
      spent.clients += clientCpu() - c0;
      spent.wall += (performance.now() - w0) / 1000;
      await new Promise((done) => setTimeout(done, 500)); // the last frames in flight
      (withClients ? watched : alone).push(...r.durations);
      if (withClients) received.push(median(sockets.map((s) => s.counts.get(r.stream) ?? 0)));
      for (const s of sockets) s.close();
    }
  }
  table.push({ name, alone: median(alone), watched: median(watched), received: median(received), cpu });
}
const [p, b] = table;
console.log(`paced: a 1,000-page static build while another build streams 10,000 log events/s (60,000 in all); median of ${rounds} rounds:`);
console.log('| dashboards connected | the 1,000-page build | events each client received |');
console.log('| --- | --- | --- |');
console.log(`| none | ${p.alone.toFixed(3)} s | — |`);
console.log(`| ${clients} WebSocket clients | ${p.watched.toFixed(3)} s | ${p.received} of 60000 |`);
console.log(`slowdown: ${(p.watched / p.alone).toFixed(2)}×`);
const share = (c) => `service ${(c.service / c.wall).toFixed(2)}, the clients' Node process ${(c.clients / c.wall).toFixed(2)}`;
console.log(`cores busy over the rounds (2 here): without clients ${share(p.cpu.none)}; with them ${share(p.cpu.watched)}`);
console.log();
console.log(`burst: a build whose hook prints ${lines} lines as fast as it can:`);
console.log('| dashboards connected | build | events/s | events each client received |');
console.log('| --- | --- | --- | --- |');
console.log(`| none | ${b.alone.toFixed(3)} s | ${Math.round(Number(lines) / b.alone)} | — |`);
console.log(`| ${clients} WebSocket clients | ${b.watched.toFixed(3)} s | ${Math.round(Number(lines) / b.watched)} | ${b.received} of ${lines} |`);
console.log(`slowdown: ${(b.watched / b.alone).toFixed(2)}×`);
