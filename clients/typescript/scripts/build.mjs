// Builds dist/esm (ES modules) and dist/cjs (CommonJS) with tsc.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(pkgDir, 'node_modules', 'typescript', 'bin', 'tsc');

rmSync(join(pkgDir, 'dist'), { recursive: true, force: true });
for (const project of ['tsconfig.json', 'tsconfig.cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', join(pkgDir, project)], { stdio: 'inherit', cwd: pkgDir });
}
// package.json says "type": "module"; mark the CommonJS tree as such.
mkdirSync(join(pkgDir, 'dist', 'cjs'), { recursive: true });
writeFileSync(join(pkgDir, 'dist', 'cjs', 'package.json'), '{\n  "type": "commonjs"\n}\n');
console.log('built dist/esm and dist/cjs');
