// The Workz build dashboard: charts and tables filled from the historical API on load and
// kept live by the /ws feed (the platform document's build_completed, queue_status and
// worker_status messages, and build_event for the builds in progress). The token comes from
// the page's fragment (#token=…, never sent to the server) or the form, and stays in this
// tab's sessionStorage.
'use strict';

const KEPT = 5000; // finished builds kept in memory (newest)
const state = {
  token: null,
  builds: new Map(), // build id → finished build
  live: new Map(), // build id → build in progress
  queue: { pending: 0, building: 0, completed: 0 },
  alerts: { averageDuration: 300, failureRate: 10, queueLength: 10, window: 20 },
  opened: false,
  dirty: false,
};

function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    sessionStorage.setItem('workzToken', fragment.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('workzToken');
}

const charts = {
  duration: new Chart('buildDurationChart', {
    type: 'line',
    data: { labels: [], datasets: [{ label: 'Build duration (seconds)', data: [], borderColor: 'rgb(75, 192, 192)', tension: 0.1 }] },
    options: { responsive: true, maintainAspectRatio: false, animation: { duration: 200 }, scales: { y: { beginAtZero: true } } },
  }),
  outcomes: new Chart('successRateChart', {
    type: 'doughnut',
    data: { labels: ['Success', 'Failed', 'Timeout'], datasets: [{ data: [0, 0, 0], backgroundColor: ['#4CAF50', '#F44336', '#FF9800'] }] },
    options: { responsive: true, maintainAspectRatio: false, animation: { duration: 200 } },
  }),
  queue: new Chart('queueLengthChart', {
    type: 'bar',
    data: { labels: ['Pending', 'Building', 'Completed'], datasets: [{ label: 'Build count', data: [0, 0, 0], backgroundColor: ['#2196F3', '#FF9800', '#4CAF50'] }] },
    options: { responsive: true, maintainAspectRatio: false, animation: { duration: 200 }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { display: false } } },
  }),
};

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function finishedOldestFirst() {
  return [...state.builds.values()].sort((a, b) => a.finished_at - b.finished_at || a.build_id.localeCompare(b.build_id));
}

function addFinished(build) {
  state.builds.set(build.build_id, build);
  state.live.delete(build.build_id);
  if (state.builds.size > KEPT) {
    for (const old of finishedOldestFirst().slice(0, state.builds.size - KEPT)) state.builds.delete(old.build_id);
  }
}

// The document's alerts, over the latest `window` builds (at least 5, as the webhooks' alerts).
function alerts(finished) {
  const shown = [];
  const latest = finished.slice(-state.alerts.window);
  if (latest.length >= 5) {
    const average = latest.reduce((sum, b) => sum + b.duration, 0) / latest.length;
    if (average > state.alerts.averageDuration) {
      shown.push(['warning', `Average build duration is high: ${average.toFixed(1)} s over the last ${latest.length} builds (threshold ${state.alerts.averageDuration} s)`]);
    }
    const failed = latest.filter((b) => b.status === 'failed' || b.status === 'timed_out').length;
    const rate = (100 * failed) / latest.length;
    if (rate > state.alerts.failureRate) {
      shown.push(['error', `Build failure rate is high: ${rate.toFixed(1)}% of the last ${latest.length} builds (threshold ${state.alerts.failureRate}%)`]);
    }
  }
  if (state.queue.pending > state.alerts.queueLength) {
    shown.push(['info', `Build queue is backed up: ${state.queue.pending} pending builds (threshold ${state.alerts.queueLength})`]);
  }
  return shown;
}

function render() {
  state.dirty = false;
  const finished = finishedOldestFirst();
  const last = finished.slice(-20);
  charts.duration.data.labels = last.map((b) => new Date(b.finished_at * 1000).toLocaleTimeString());
  charts.duration.data.datasets[0].data = last.map((b) => Math.round(b.duration * 1000) / 1000);
  charts.duration.update();
  const dayAgo = Date.now() / 1000 - 24 * 3600;
  const counts = [0, 0, 0];
  for (const b of finished) {
    if (b.finished_at < dayAgo) continue;
    if (b.status === 'succeeded') counts[0]++;
    else if (b.status === 'failed') counts[1]++;
    else if (b.status === 'timed_out') counts[2]++;
  }
  charts.outcomes.data.datasets[0].data = counts;
  charts.outcomes.update();
  charts.queue.data.datasets[0].data = [state.queue.pending, state.queue.building, state.queue.completed];
  charts.queue.update();

  const box = document.getElementById('alerts');
  box.replaceChildren(...alerts(finished).map(([kind, message]) => {
    const div = document.createElement('div');
    div.className = `alert alert-${kind}`;
    div.setAttribute('role', 'alert');
    div.textContent = message;
    return div;
  }));

  const live = document.getElementById('live');
  live.replaceChildren();
  for (const b of state.live.values()) {
    const row = live.insertRow();
    row.dataset.build = b.build_id;
    cell(row, b.build_id.slice(0, 12));
    cell(row, b.state);
    const stage = cell(row, b.stage ? `${b.stage} (${b.stages_done} done)` : '—');
    if (b.log) {
      const log = document.createElement('div');
      log.className = 'log';
      log.textContent = b.log;
      stage.append(log);
    }
    cell(row, `${((performance.now() - b.since) / 1000).toFixed(0)} s`, 'num');
  }
  document.getElementById('live-empty').hidden = state.live.size > 0;
}

// The live list's clocks tick between events.
setInterval(() => state.live.size > 0 && changed(), 1000);

function changed() {
  if (!state.dirty) {
    state.dirty = true;
    requestAnimationFrame(render);
  }
}

function liveEvent(record) {
  if (state.builds.has(record.build_id)) return;
  const build = state.live.get(record.build_id) || { build_id: record.build_id, state: 'queued', stage: null, stages_done: 0 };
  // Its submission, on this page's clock.
  build.since ??= performance.now() - record.elapsed * 1000;
  if (record.type === 'started') build.state = 'running';
  if (record.type === 'stage_started') { build.state = 'running'; build.stage = record.stage; }
  if (record.type === 'stage_finished') build.stages_done++;
  if (record.type === 'log') build.log = record.line.slice(0, 200);
  state.live.set(record.build_id, build);
}

function workers(message) {
  const body = document.getElementById('workers');
  body.replaceChildren();
  for (const w of message.workers) {
    const row = body.insertRow();
    cell(row, w.accepting ? w.name : `${w.name} (draining)`);
    cell(row, String(w.slots), 'num');
    cell(row, String(w.running), 'num');
    cell(row, `${w.load}%`, 'num');
  }
  document.getElementById('desired').textContent = message.desired == null ? '' : `(desired: ${message.desired})`;
}

function handle(message) {
  switch (message.type) {
    case 'hello':
      Object.assign(state.alerts, message.alerts);
      state.live.clear();
      for (const b of message.builds) state.live.set(b.build_id, { ...b, since: performance.now() - b.elapsed * 1000 });
      break;
    case 'build_event':
      liveEvent(message.record);
      break;
    case 'build_completed':
      addFinished(message);
      break;
    case 'queue_status':
      state.queue = { pending: message.pending, building: message.building, completed: message.completed };
      break;
    case 'worker_status':
      workers(message);
      break;
    default:
      return;
  }
  changed();
}

function status(text, kind) {
  const badge = document.getElementById('connection');
  badge.textContent = text;
  badge.className = kind;
}

async function loadHistorical() {
  const response = await fetch('/build-metrics/historical?hours=24', { headers: { Authorization: `Bearer ${state.token}` } });
  if (response.status === 401) throw new Error('unauthorized');
  if (!response.ok) throw new Error(`historical: HTTP ${response.status}`);
  const data = await response.json();
  for (const [buildType, history] of Object.entries(data.types)) {
    for (const b of history.builds) addFinished({ ...b, build_type: buildType });
  }
  changed();
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  socket.onopen = () => {
    status('live', 'live');
    // After an outage: the builds that ended while the page was away.
    if (state.opened) loadHistorical().catch((error) => console.warn('Failed to load historical data:', error.message));
    state.opened = true;
  };
  // A frame is one message, or an array of the messages that were waiting.
  socket.onmessage = (event) => {
    const data = JSON.parse(event.data);
    for (const message of Array.isArray(data) ? data : [data]) handle(message);
  };
  socket.onclose = () => {
    status('reconnecting…', 'down');
    // The document's rule: try again after 5 seconds.
    setTimeout(connect, 5000);
  };
}

function askToken(why) {
  const form = document.getElementById('login');
  form.hidden = false;
  status(why, 'down');
  form.onsubmit = (event) => {
    event.preventDefault();
    sessionStorage.setItem('workzToken', document.getElementById('token').value);
    form.hidden = true;
    start();
  };
}

async function start() {
  state.token = takeToken();
  if (!state.token) return askToken('token needed');
  try {
    await loadHistorical();
  } catch (error) {
    if (error.message === 'unauthorized') {
      sessionStorage.removeItem('workzToken');
      return askToken('token rejected');
    }
    console.warn('Failed to load historical data:', error.message);
  }
  connect();
}

start();
