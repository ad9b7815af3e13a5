// @workz/build: the Workz build engine in-process. This layer only converts: plain objects
// to the engine's JSON and back, engine errors to `Error`s with `code`, `family` and `hint`,
// an AbortSignal to a cancellation. The engine runs off the JS thread; events and results
// come back as Promises settled on it.
'use strict'

const { fileURLToPath } = require('node:url')
const native = require('./native.js')

/** An engine error as a JS Error: `code`, `family`, `category`, `hint`, and `result` for a build that ran. */
class WorkzBuildError extends Error {
  constructor(report, result) {
    super(report.message)
    this.name = 'WorkzBuildError'
    this.code = report.code
    this.family = report.family
    this.category = report.category
    this.hint = report.hint ?? null
    this.result = result ?? null
  }
}

/** A native error from the engine (its `code` is the engine's, with `family` beside it) as a WorkzBuildError. */
function convertError(error) {
  if (error instanceof Error && typeof error.code === 'string' && typeof error.family === 'string') {
    return new WorkzBuildError(error)
  }
  return error
}

async function call(fn) {
  try {
    return await fn()
  } catch (error) {
    throw convertError(error)
  }
}

function callSync(fn) {
  try {
    return fn()
  } catch (error) {
    throw convertError(error)
  }
}

/** The source as the native layer takes it (a directory, or files), and the options as JSON. */
function sourceOf(source, options) {
  let directory = null
  let files = null
  if (typeof source === 'string' || source instanceof URL) {
    directory = source instanceof URL ? fileURLToPath(source) : source
  } else if (source && typeof source === 'object') {
    files = {}
    for (const [file, contents] of Object.entries(source)) {
      if (typeof contents === 'string' || Buffer.isBuffer(contents)) {
        files[file] = contents
      } else if (contents instanceof Uint8Array) {
        files[file] = Buffer.from(contents)
      } else {
        throw new TypeError(`the contents of ${file} must be a string, a Buffer or a Uint8Array`)
      }
    }
  } else {
    throw new TypeError('source must be a directory path or an object of path -> string | Buffer')
  }
  return [directory, files, JSON.stringify(options ?? {})]
}

/** A submitted build: iterate its events, await its result, or cancel it. */
class Build {
  constructor(nativeBuild) {
    this._native = nativeBuild
  }

  get buildId() {
    return this._native.buildId
  }

  /** Cancel the build (queued or running); its result then has status "cancelled". */
  cancel() {
    this._native.cancel()
  }

  /** The build's events in order (the core's event objects), ending after "finished". */
  async *events() {
    for (;;) {
      const event = await call(() => this._native.nextEvent())
      if (event === '') return
      yield JSON.parse(event)
    }
  }

  /**
   * The result. `onEvent` is called for each event first. If `onEvent` throws, the build is
   * cancelled and, once it has ended, the callback's error is thrown. With `check` (the
   * default) a build that did not succeed rejects with its WorkzBuildError.
   */
  async wait({ onEvent, check = true } = {}) {
    if (onEvent) {
      for await (const event of this.events()) {
        try {
          onEvent(event)
        } catch (error) {
          this.cancel()
          await call(() => this._native.wait())
          throw error
        }
      }
    }
    const result = JSON.parse(await call(() => this._native.wait()))
    if (result.artifacts) lazyFiles(result.artifacts, this._native)
    if (check && result.status !== 'succeeded') {
      // Every result that did not succeed carries its error (the engine guarantees it).
      const report = result.error ?? {
        code: 'internal',
        family: 'internal',
        category: 'internal',
        message: `the build ended ${result.status} without an error`,
        hint: null,
      }
      throw new WorkzBuildError(report, result)
    }
    return result
  }
}

/** `artifacts.files`, fetched from the engine and decoded the first time it is read. */
function lazyFiles(artifacts, nativeBuild) {
  Object.defineProperty(artifacts, 'files', {
    enumerable: true,
    configurable: true,
    get() {
      const files = JSON.parse(nativeBuild.filesJson())
      Object.defineProperty(artifacts, 'files', { value: files, enumerable: true, writable: true, configurable: true })
      return files
    },
    set(value) {
      Object.defineProperty(artifacts, 'files', { value, enumerable: true, writable: true, configurable: true })
    },
  })
}

/** The build engine. `config`: an engine config object (or JSON text); omitted = embedded defaults. */
class Engine {
  constructor(config) {
    const json = config == null ? '' : typeof config === 'string' ? config : JSON.stringify(config)
    this._native = callSync(() => new native.Engine(json))
  }

  /** Queue a build and return its handle at once. */
  submit(source, options = {}) {
    const [directory, files, optionsJson] = sourceOf(source, options)
    return new Build(callSync(() => this._native.submit(directory, files, optionsJson)))
  }

  /**
   * Build: resolves with the BuildResult, rejects with a WorkzBuildError (whose `result` is the
   * BuildResult) when the build does not succeed. Options: target, onEvent, signal (an
   * AbortSignal that cancels the build), appConfig, force, priority, timeout, check.
   */
  async build(source, options = {}) {
    const { signal, onEvent, check } = options
    if (signal?.aborted) {
      throw new WorkzBuildError({ code: 'cancelled', family: 'cancelled', category: 'user', message: 'the build was cancelled before it started', hint: null })
    }
    const build = this.submit(source, options)
    const abort = () => build.cancel()
    signal?.addEventListener('abort', abort, { once: true })
    try {
      return await build.wait({ onEvent, check })
    } finally {
      signal?.removeEventListener('abort', abort)
    }
  }

  /** Whether the next build would hit the cache, and if not, what changed. */
  async explain(source, options = {}) {
    const [directory, files, optionsJson] = sourceOf(source, options)
    return JSON.parse(await call(() => this._native.explain(directory, files, optionsJson)))
  }

  async cacheStats() {
    return JSON.parse(await call(() => this._native.cacheStats()))
  }

  /** Remove the cache entries matching a glob over `<app>/<target>/<key>`; how many. */
  async cacheInvalidate(pattern) {
    return Number(await call(() => this._native.cacheInvalidate(pattern)))
  }

  async cachePrune() {
    return JSON.parse(await call(() => this._native.cachePrune()))
  }
}

module.exports = {
  Engine,
  Build,
  WorkzBuildError,
  version: native.version(),
  abiVersion: native.abiVersion(),
  PANIC_POINT_VAR: native.panicPointVar(),
}
