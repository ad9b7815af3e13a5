// The dashboard of `workz-build serve` in a real headless Chromium (playwright-core over
// Debian's chromium): run by tests/dashboard.rs, which passes the binary, a scratch root, the
// browser and where to save screenshots. This script starts (and restarts) the service itself,
// uploads apps as tar archives made by GNU tar, as a host would, and watches the page.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(path.join(process.env.WORKZ_TEST_PLAYWRIGHT, 'package.json'));
const { chromium } = require('playwright-core');

const BIN = process.env.WORKZ_BIN;
const ROOT = process.env.WORKZ_ROOT;
const SHOTS = process.env.WORKZ_SCREENSHOTS;
const TOKEN = 'dashboard-token-0123456789abcdef';

function check(condition, message) {
  if (!condition) throw new Error(message);
}

let server = null;
let address = null;

// Start the service; on a restart, on the same port (the page reconnects to where it was).
async function startServer() {
  const config = path.join(ROOT, 'engine.json');
  fs.writeFileSync(config, JSON.stringify({ buildSystem: { maxConcurrentBuilds: 2 } }));
  const listen = address ?? '127.0.0.1:0';
  server = spawn(BIN, ['--config', config, 'serve', '--listen', listen], {
    env: {
      ...process.env,
      WORKZ_API_TOKEN: TOKEN,
      WORKZ_CACHE_DIR: path.join(ROOT, 'cache'),
      WORKZ_ARTIFACTS_DIR: path.join(ROOT, 'artifacts'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: server.stdout });
  const line = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    server.once('exit', (code) => reject(new Error(`serve exited with ${code} before listening`)));
  });
  check(line.startsWith('listening on http://'), `unexpected first line: ${line}`);
  address = line.slice('listening on http://'.length);
}

async function stopServer() {
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  await exited;
}

let apps = 0;
// A static app as users write them: pages, sometimes a stylesheet, sometimes an image.
function app(hooks) {
  const n = apps++;
  const dir = path.join(ROOT, 'apps', `app${n}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'workz.json'), JSON.stringify({ name: `dash-${n}`, appType: 'static', hooks: { preBuild: hooks } }));
  const css = n % 2 === 0 ? '<link rel="stylesheet" href="site.css">' : '';
  fs.writeFileSync(path.join(dir, 'index.html'), `<!doctype html>${css}<h1>App ${n}</h1>${n % 3 === 0 ? '<img src="logo.svg" alt="">' : ''}`);
  if (n % 2 === 0) fs.writeFileSync(path.join(dir, 'site.css'), `h1 { color: #${(n * 2654435761 % 0xffffff).toString(16).padStart(6, '0')}; }`);
  if (n % 3 === 0) fs.writeFileSync(path.join(dir, 'logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>');
  const tar = spawnSync('tar', ['-C', dir, '-cf', '-', '.']);
  check(tar.status === 0, `tar: ${tar.stderr}`);
  return tar.stdout;
}

async function api(method, route, body) {
  const headers = { Authorization: `Bearer ${TOKEN}` };
  if (body) headers['Content-Type'] = 'application/x-tar';
  const response = await fetch(`http://${address}${route}`, { method, headers, body });
  const json = await response.json();
  check(response.ok, `${method} ${route}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

const submit = async (hooks = []) => (await api('POST', '/api/builds', app(hooks))).build_id;

async function finished(id) {
  for (let i = 0; i < 1200; i++) {
    const body = await api('GET', `/api/builds/${id}`);
    if (body.status) return body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${id} never ended`);
}

const chartData = (page, id) => page.evaluate((id) => Chart.getChart(id).data.datasets[0].data, id);
const until = (page, what, fn, arg) =>
  page.waitForFunction(fn, arg, { timeout: 30000 }).catch((e) => {
    throw new Error(`waiting for ${what}: ${e.message}`);
  });
const outcomes = (page, expected) =>
  until(page, `outcomes ${expected}`, (want) => JSON.stringify(Chart.getChart('successRateChart').data.datasets[0].data) === want, JSON.stringify(expected));

async function main() {
  await startServer();
  // Builds already in the history when the page opens.
  const before = await Promise.all([submit(), submit(), submit()]);
  for (const id of before) check((await finished(id)).status === 'succeeded', `${id} failed`);

  const browser = await chromium.launch({ executablePath: process.env.WORKZ_CHROMIUM, headless: true, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    await page.goto(`http://${address}/#token=${TOKEN}`);
    await until(page, 'the socket', () => document.getElementById('connection').textContent === 'live');
    check(!page.url().includes(TOKEN), 'the token stays in the address bar');
    check(!(await page.isVisible('#login')), 'the token form is hidden once a token is given');
    await outcomes(page, [3, 0, 0]);
    check((await chartData(page, 'buildDurationChart')).length === 3, 'three durations from the history');
    await until(page, 'the worker table', () => document.querySelector('#workers tr td')?.textContent === 'this service');

    // A build started through the API shows up live, and its completion moves the charts.
    const slow = await submit(['sleep 2']);
    await until(page, 'the live build', (id) => document.querySelector(`#live tr[data-build="${id}"]`) !== null, slow);
    await outcomes(page, [4, 0, 0]);
    check((await chartData(page, 'buildDurationChart')).length === 4, 'a fourth duration');
    check((await page.$(`#live tr[data-build="${slow}"]`)) === null, 'the finished build left the live list');
    const durations = await chartData(page, 'buildDurationChart');
    check(durations[3] >= 2, `the slow build's duration is last: ${durations}`);

    // A burst: two slots held by slow builds, twelve queued behind them.
    const blockers = [await submit(['sleep 4']), await submit(['sleep 4'])];
    const burst = await Promise.all(Array.from({ length: 12 }, () => submit()));
    await until(page, 'the pending bar', () => Chart.getChart('queueLengthChart').data.datasets[0].data[0] >= 11);
    await until(page, 'the queue alert', () => document.querySelector('#alerts .alert-info') !== null);
    for (const id of [...blockers, ...burst]) await finished(id);
    await until(page, 'the drained queue', () => {
      const [pending, building, completed] = Chart.getChart('queueLengthChart').data.datasets[0].data;
      return pending === 0 && building === 0 && completed === 18;
    });
    check((await page.$('#alerts .alert-info')) === null, 'the queue alert went away');
    check((await page.$('#alerts .alert-error')) === null, 'no failure alert yet');

    // Failures past 10 % of the latest 20 builds raise the failure-rate alert.
    const failing = await Promise.all([submit(['exit 3']), submit(['exit 3']), submit(['exit 3'])]);
    for (const id of failing) check((await finished(id)).status === 'failed', `${id} should fail`);
    await outcomes(page, [18, 3, 0]);
    await until(page, 'the failure alert', () => /failure rate is high: 15\.0%/.test(document.querySelector('#alerts .alert-error')?.textContent ?? ''));
    check(errors.length === 0, `console errors: ${errors.join(' | ')}`);
    // Screenshots for docs/monitoring.md, with a build in progress and the charts at rest.
    const running = await submit(['sleep 3']);
    await until(page, 'the running build', (id) => /running/.test(document.querySelector(`#live tr[data-build="${id}"]`)?.textContent ?? ''), running);
    await until(page, 'the building bar', () => Chart.getChart('queueLengthChart').data.datasets[0].data[1] === 1);
    await page.waitForTimeout(600);
    if (SHOTS) {
      fs.mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, 'dashboard.png'), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-phone.png'), fullPage: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 0, `the page is wider than a phone by ${overflow}px`);
      await page.setViewportSize({ width: 1280, height: 900 });
    }

    await finished(running);
    await outcomes(page, [19, 3, 0]);

    // The server goes away and comes back: the page reconnects by itself and keeps updating.
    await stopServer();
    await until(page, 'the lost connection', () => document.getElementById('connection').textContent === 'reconnecting…');
    await startServer();
    await until(page, 'the reconnection', () => document.getElementById('connection').textContent === 'live');
    const after = await submit();
    check((await finished(after)).status === 'succeeded', 'the build after the restart');
    await outcomes(page, [20, 3, 0]);
    const unexpected = errors.filter((e) => !/WebSocket connection|ERR_CONNECTION_REFUSED/.test(e));
    check(unexpected.length === 0, `console errors: ${unexpected.join(' | ')}`);
    console.log(`dashboard: all checks passed (${apps} builds)`);
  } finally {
    await browser.close();
    await stopServer();
  }
}

main().catch(async (error) => {
  console.error(error.stack || String(error));
  if (server) server.kill('SIGKILL');
  process.exit(1);
});
