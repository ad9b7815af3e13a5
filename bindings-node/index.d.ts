// Types of @workz/build (index.js). The native module's generated types are in native.d.ts.

/** One event of a build: the core's BuildEvent with its record fields. */
export interface BuildEvent {
  build_id: string
  seq: number
  elapsed: number
  type: string
  [field: string]: unknown
}

export interface ErrorReport {
  code: string
  category: 'user' | 'toolchain' | 'infrastructure' | 'internal'
  family: 'config' | 'validation' | 'dependency' | 'toolchain' | 'build' | 'timeout' | 'cancelled' | 'storage' | 'internal'
  message: string
  hint: string | null
}

export interface BuildResult {
  build_id: string
  status: 'succeeded' | 'failed' | 'cancelled' | 'timed_out'
  app: { name: string; version: string } | null
  target: string | null
  cache: { key: string | null; hit: boolean; tier: string | null }
  artifacts: {
    path: string
    entry_point: string | null
    size: number
    files: Array<{ path: string; size: number; blake3: string }>
    reused: boolean
  } | null
  timings: Record<string, number>
  duration: number
  warnings: Array<{ code: string; message: string }>
  error: ErrorReport | null
  /** The performance monitor's advice: stages that took most of the build. */
  suggestions: Array<{ stage: 'dependencies' | 'compilation' | 'optimization'; share: number; issue: string; solutions: string[] }>
  /** On a farm: the worker that ran it, and why there. */
  worker?: string
  placement?: { worker: string; reason: string; scores: Record<string, number> }
}

/** A directory path, or relative path -> contents. */
export type Source = string | URL | Record<string, string | Buffer | Uint8Array>

export interface BuildOptions {
  target?: string
  appConfig?: Record<string, unknown>
  force?: boolean
  priority?: number
  /** Seconds. */
  timeout?: number
  /** On a farm (`queue.redis`), submissions with the same key are one build. */
  idempotencyKey?: string
}

export declare class WorkzBuildError extends Error {
  code: string
  family: ErrorReport['family']
  category: ErrorReport['category']
  hint: string | null
  /** The BuildResult, for a build that ran. */
  result: BuildResult | null
}

export declare class Build {
  readonly buildId: string
  cancel(): void
  events(): AsyncGenerator<BuildEvent>
  wait(options?: { onEvent?: (event: BuildEvent) => void; check?: boolean }): Promise<BuildResult>
}

export declare class Engine {
  constructor(config?: Record<string, unknown> | string)
  submit(source: Source, options?: BuildOptions): Build
  build(
    source: Source,
    options?: BuildOptions & { onEvent?: (event: BuildEvent) => void; signal?: AbortSignal; check?: boolean },
  ): Promise<BuildResult>
  explain(source: Source, options?: BuildOptions): Promise<Record<string, unknown>>
  cacheStats(): Promise<{ tiers: unknown[]; usage: unknown[] }>
  cacheInvalidate(pattern: string): Promise<number>
  cachePrune(): Promise<{ entries_removed: number; blobs_removed: number; bytes_freed: number }>
}

export declare const version: string
export declare const abiVersion: number
export declare const PANIC_POINT_VAR: string
