/**
 * `npm run build` (and `npm pack`'s prepack): lib/ from scratch, with everything the installed package needs and
 * nothing it does not: the compiled JavaScript and type declarations of the library and the CLI
 * (tsconfig.build.json: src/index.ts, src/cli/ and what they import), and the runner, bundled from src/runner/main.ts
 * and compressed as the Job ships it (lib/runner.js.br), so that installing needs neither esbuild nor the source.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleRunner, PREBUILT_RUNNER_FILE } from '../src/chart/runner-bundle';
import { compressRunner } from '../src/chart/runner-compression';

const root = join(__dirname, '..');
rmSync(join(root, 'lib'), { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
const runner = bundleRunner();
const file = join(root, PREBUILT_RUNNER_FILE);
writeFileSync(file, compressRunner(runner.code));
console.log(`lib/: compiled (tsconfig.build.json); ${PREBUILT_RUNNER_FILE}: ${statSync(file).size} bytes, `
  + `the runner (${runner.bytes} bytes, sha256 ${runner.sha256}) compressed`);
