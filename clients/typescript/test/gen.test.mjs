// src/gen must be what `npm run gen` makes from ../../protos now. Needs a Python with grpcio-tools
// and googleapis-common-protos ($PYTHON, else ../../.venv, else python3); skipped without one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const venvPython = resolve(pkgDir, '..', '..', '.venv', 'bin', 'python');
const python = process.env.PYTHON || (existsSync(venvPython) ? venvPython : 'python3');

function hasProtoc() {
  try {
    execFileSync(python, ['-c', 'import grpc_tools.protoc, google.api'], { stdio: 'ignore' });
    return existsSync(resolve(pkgDir, '..', '..', 'protos'));
  } catch {
    return false;
  }
}

function listFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

test('src/gen is up to date with the protos', { skip: hasProtoc() ? false : 'no Python with grpcio-tools' }, () => {
  const out = mkdtempSync(join(tmpdir(), 'plutos-ts-gen-'));
  try {
    execFileSync(process.execPath, [join(pkgDir, 'scripts', 'gen.mjs')], {
      env: { ...process.env, PYTHON: python, PLUTOS_GEN_OUT: out },
      stdio: 'pipe',
    });
    const committed = join(pkgDir, 'src', 'gen');
    const fresh = listFiles(out).map((f) => relative(out, f));
    assert.deepEqual(listFiles(committed).map((f) => relative(committed, f)), fresh, 'run `npm run gen`');
    for (const file of fresh) {
      assert.equal(readFileSync(join(committed, file), 'utf8'), readFileSync(join(out, file), 'utf8'), `${file} is stale: run \`npm run gen\``);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
