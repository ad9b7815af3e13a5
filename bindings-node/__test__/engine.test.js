// The Node binding end to end, against the real engine.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { Engine, WorkzBuildError, version, abiVersion, PANIC_POINT_VAR } = require('..')

const STATIC_APP = path.resolve(__dirname, '../../examples/static-site')
const SLOW_APP = { name: 'slow', appType: 'static', hooks: { preBuild: ['sleep 60'] } }

function engine() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'workz-node-'))
  return new Engine({ cache: { dir: path.join(dir, 'cache') }, storage: { artifactsDir: path.join(dir, 'artifacts') } })
}

function smallApp(name, body = '<h1>hi</h1>') {
  return { 'workz.json': JSON.stringify({ name, appType: 'static' }), 'index.html': Buffer.from(body) }
}

test('version and ABI version', () => {
  assert.match(version, /^\d+\.\d+\.\d+/)
  assert.equal(abiVersion, 1)
})

test('a build with events, then a cache hit, explain and cache operations', async () => {
  const e = engine()
  const events = []
  const result = await e.build(STATIC_APP, { onEvent: (ev) => events.push(ev) })
  assert.equal(result.status, 'succeeded')
  assert.equal(result.cache.hit, false)
  assert.ok(fs.existsSync(path.join(result.artifacts.path, 'index.html')))
  assert.deepEqual(events.map((ev) => ev.seq), events.map((_, i) => i))
  assert.equal(events.at(-1).type, 'finished')
  assert.ok(events.every((ev) => ev.build_id === result.build_id))

  const again = await e.build(STATIC_APP)
  assert.equal(again.cache.hit, true)
  // The file list is a lazy accessor until read, fetched from the engine then, and
  // serialises with the rest.
  assert.equal(typeof Object.getOwnPropertyDescriptor(again.artifacts, 'files').get, 'function')
  const paths = again.artifacts.files.map((f) => f.path)
  assert.ok(paths.includes('index.html'))
  assert.deepEqual(JSON.parse(JSON.stringify(again)).artifacts.files.map((f) => f.path), paths)
  // Once read it is a plain data property, so a caller can replace it as in any object.
  const read = Object.getOwnPropertyDescriptor(again.artifacts, 'files')
  assert.ok(read.writable && Array.isArray(read.value), 'files became a writable data property')
  // Assigned before it is ever read, it takes the value and the engine is not asked.
  const third = await e.build(STATIC_APP)
  third.artifacts.files = []
  assert.deepEqual(JSON.parse(JSON.stringify(third)).artifacts.files, [])
  assert.equal((await e.explain(STATIC_APP)).would_hit, true)
  assert.ok((await e.cacheStats()).tiers.length >= 1)
  assert.ok((await e.cacheInvalidate('workz-static-example/*')) >= 1)
  assert.equal((await e.explain(STATIC_APP)).would_hit, false)
  assert.deepEqual(Object.keys(await e.cachePrune()).sort(), ['blobs_removed', 'bytes_freed', 'entries_removed'])
})

test('in-memory sources take strings, Buffers and Uint8Arrays', async () => {
  const result = await engine().build({
    'workz.json': '{"name": "mem", "appType": "static"}',
    'index.html': '<p>str</p>',
    'img/x.bin': new Uint8Array([0, 1, 2, 255]),
  })
  assert.deepEqual([...fs.readFileSync(path.join(result.artifacts.path, 'img/x.bin'))], [0, 1, 2, 255])
})

test('a failed build rejects with code, family, hint and the result', async () => {
  const e = engine()
  await assert.rejects(e.build({ 'index.html': 'x' }), (error) => {
    assert.ok(error instanceof WorkzBuildError && error instanceof Error)
    assert.equal(error.code, 'app_config_missing')
    assert.equal(error.family, 'config')
    assert.ok(error.hint)
    assert.equal(error.result.status, 'failed')
    return true
  })
  await assert.rejects(
    e.build({ 'workz.json': '{"name": "bad", "appType": "javascript"}', 'main.js': 'let = ;' }),
    (error) => error.code === 'validation_failed' && error.message.includes('main.js:1:'),
  )
  const result = await e.build({ 'index.html': 'x' }, { check: false })
  assert.equal(result.error.family, 'config')
})

test('bad input is an error, not a crash', async () => {
  assert.throws(() => new Engine({ buildSystem: { maxConcurrentBuilds: 'four' } }), (error) => error.code === 'config_invalid')
  assert.throws(() => new Engine('{not json'), (error) => error.code === 'config_parse_error')
  const e = engine()
  assert.throws(() => e.submit(42), TypeError)
  assert.throws(() => e.submit({ 'index.html': 42 }), TypeError)
  await assert.rejects(e.build({ '../escape.txt': 'x' }), (error) => error.code === 'source_path_invalid')
  await assert.rejects(e.build('/nonexistent/app'), (error) => error.code === 'source_not_found')
  await assert.rejects(e.cacheInvalidate('['), (error) => error.code === 'invalid_request')
  await assert.rejects(e.build(STATIC_APP, { timeout: -1 }), (error) => error.code === 'invalid_request' && /timeout/.test(error.message))
})

test("the native layer's errors carry the engine's code as their own, on both paths", async () => {
  const native = require('../native.js')
  const isEngineError = (code, family) => (error) =>
    error instanceof Error && error.code === code && error.family === family && !error.message.includes('WORKZ')
  // Thrown from a call ...
  assert.throws(() => new native.Engine('{not json'), isEngineError('config_parse_error', 'config'))
  // ... and rejected from a Promise.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'workz-node-'))
  const e = new native.Engine(JSON.stringify({ cache: { dir: path.join(dir, 'cache') }, storage: { artifactsDir: path.join(dir, 'artifacts') } }))
  await assert.rejects(e.cacheInvalidate('['), isEngineError('invalid_request', 'config'))
})

test('8 concurrent builds: all succeed, events reach their own callback', async () => {
  const e = engine()
  const seen = Array.from({ length: 8 }, () => [])
  const results = await Promise.all(
    seen.map((events, i) => e.build(smallApp(`node-${i}`, `<p>${i}</p>`), { onEvent: (ev) => events.push(ev) })),
  )
  results.forEach((result, i) => {
    assert.equal(result.status, 'succeeded')
    assert.equal(result.app.name, `node-${i}`)
    assert.ok(seen[i].length > 3 && seen[i].every((ev) => ev.build_id === result.build_id))
    assert.equal(seen[i].at(-1).type, 'finished')
  })
  assert.equal(new Set(results.map((r) => r.build_id)).size, 8)
})

test('an AbortSignal cancels the build', async () => {
  const controller = new AbortController()
  const started = Date.now()
  const pending = engine().build(smallApp('slow'), {
    appConfig: SLOW_APP,
    signal: controller.signal,
    onEvent: (ev) => ev.type === 'process_started' && controller.abort(),
  })
  await assert.rejects(pending, (error) => error.code === 'cancelled' && error.result.status === 'cancelled')
  assert.ok(Date.now() - started < 30000)
})

test('a throwing callback cancels the build and its error is thrown', async () => {
  const e = engine()
  const started = Date.now()
  await assert.rejects(
    e.build(smallApp('throwing'), {
      appConfig: SLOW_APP,
      onEvent: (ev) => {
        if (ev.type === 'process_started') throw new RangeError('from the callback')
      },
    }),
    RangeError,
  )
  assert.ok(Date.now() - started < 30000)
  assert.equal((await e.build(smallApp('after'))).status, 'succeeded')
})

test('events as an async iterator', async () => {
  const build = engine().submit(smallApp('iterated'))
  const types = []
  for await (const ev of build.events()) types.push(ev.type)
  assert.equal(types[0], 'started')
  assert.equal(types.at(-1), 'finished')
  assert.equal((await build.wait()).status, 'succeeded')
})

test('a panic inside the engine is an internal error; the process lives on', async () => {
  const e = engine()
  process.env[PANIC_POINT_VAR] = 'explain'
  try {
    await assert.rejects(e.explain(STATIC_APP), (error) => error.code === 'internal' && /panicked/.test(error.message))
    process.env[PANIC_POINT_VAR] = 'build'
    await assert.rejects(e.build(STATIC_APP, { force: true }), (error) => error.code === 'internal' && error.result.status === 'failed')
  } finally {
    delete process.env[PANIC_POINT_VAR]
  }
  assert.equal((await e.build(STATIC_APP, { force: true })).status, 'succeeded')
})
