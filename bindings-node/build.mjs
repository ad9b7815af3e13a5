// Build the addon and its generated types without `napi build`: that one always passes
// `--target`, which moves cargo into another target directory and recompiles every crate
// (rolldown included) instead of sharing the workspace's build.
//
//   node build.mjs [--release] [--check]
//
// --check fails when the generated native.d.ts differs from the committed one.
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir, homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateTypeDef } from '@napi-rs/cli'

const here = dirname(fileURLToPath(import.meta.url))
const release = process.argv.includes('--release')
const check = process.argv.includes('--check')
const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache/workz-build/target')
const typeDefDir = mkdtempSync(join(tmpdir(), 'workz-napi-types-'))

// napi-derive writes the type definitions while the macros expand: make sure they do.
const now = new Date()
utimesSync(join(here, 'src/lib.rs'), now, now)
// The test suite's build (not --release) turns the engine's panic point on.
execFileSync('cargo', ['build', '--locked', '-p', 'workz-build-node', ...(release ? ['--release'] : ['--features', 'test-hooks'])], {
  cwd: here,
  stdio: 'inherit',
  env: { ...process.env, CARGO_TARGET_DIR: targetDir, NAPI_TYPE_DEF_TMP_FOLDER: typeDefDir },
})
copyFileSync(join(targetDir, release ? 'release' : 'debug', 'libworkz_build_node.so'), join(here, 'workz-build.node'))

const { dts } = await generateTypeDef({ typeDefDir, cwd: here })
rmSync(typeDefDir, { recursive: true, force: true })
const dtsPath = join(here, 'native.d.ts')
if (check) {
  const committed = readFileSync(dtsPath, 'utf8')
  if (committed !== dts) {
    console.error('bindings-node/native.d.ts is not what napi generates: run `node build.mjs` and commit it')
    process.exit(1)
  }
} else {
  writeFileSync(dtsPath, dts)
}
