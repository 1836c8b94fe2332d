/**
 * The runner's parts as the loader sees them: a runner that does not compress below a part is split into parts of
 * equal size in ConfigMaps the Job mounts in order; the loader (load-runner.js) puts them together and runs the runner
 * as the main module; and it refuses, in one line and before any of the runner runs, a missing part, a part of
 * another runner, a manifest naming another runner and a missing manifest.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ANNOTATIONS_LIMIT_BYTES, appliedAnnotationsBytes, compressRunner, packRunner, RUNNER_PART_MAX_BYTES, sha256Hex, synthManifests } from '../src/chart';
import { loadSpecFile } from '../src/spec/load';
import type { MigrationSpec } from '../src/spec/schema';
import { incompressibleRunner, runnerConfigMaps, unpacked, writeScriptVolume } from './support/runner-objects';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const EXAMPLE = join(__dirname, '..', 'migration.yaml');
const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `dbm-loader-${prefix}-`));
  temps.push(dir);
  return dir;
}
const synth = (spec: MigrationSpec, runnerBundle: string) => synthManifests(spec, { runnerBundle }) as { objects: Obj[] };
const one = (objects: Obj[], name: string) => objects.find((o) => o.metadata.name === name)!;
const podOf = (objects: Obj[]) => objects.find((o) => o.kind === 'Job')!.spec.template;
const scriptDirectory = (objects: Obj[], prefix: string) => writeScriptVolume(objects, tempDir(prefix));

describe('the runner\'s parts', () => {
  it('given a runner that does not compress below a part (200 KB of random bytes), when synthesized, then it is split into parts of equal size, each under the part limit, in ConfigMaps the Job mounts in order', () => {
    const runner = incompressibleRunner(200_000);
    const { objects } = synth(loadSpecFile(EXAMPLE), runner);
    const parts = runnerConfigMaps(objects);
    const count = Math.ceil(compressRunner(runner).length / RUNNER_PART_MAX_BYTES);
    expect(count).toBeGreaterThanOrEqual(3);
    expect(parts.map((o) => o.metadata.name)).toEqual(Array.from({ length: count }, (_, i) => `db-migration-runner-${i + 1}`));
    const sizes = parts.map((cm, i) => Buffer.from(cm.binaryData[`runner.js.br.${i + 1}`], 'base64').length);
    for (const size of sizes) expect(size).toBeLessThanOrEqual(RUNNER_PART_MAX_BYTES);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    expect(unpacked(objects)).toBe(runner);
    for (const cm of parts) expect(appliedAnnotationsBytes(cm)).toBeLessThan(ANNOTATIONS_LIMIT_BYTES / 2.5);
    const manifest = JSON.parse(one(objects, 'db-migration-script').data['runner.json']);
    expect(manifest.parts.map((p: Obj) => [p.file, p.bytes, p.source])).toEqual(sizes.map((size, i) => [`runner.js.br.${i + 1}`, size, `ConfigMap db-migration-runner-${i + 1}`]));
    expect(podOf(objects).spec.volumes.find((v: Obj) => v.name === 'script').projected.sources.map((s: Obj) => s.configMap)).toEqual([
      { name: 'db-migration-script', optional: false },
      ...parts.map((cm) => ({ name: cm.metadata.name, optional: true })),
    ]);
  });

  it('given the loader, its manifest and the parts in a directory, when node runs the loader, then the runner runs as the main module with the arguments', () => {
    const runner = 'console.log(JSON.stringify({ main: require.main === module, file: __filename.split("/").pop(), args: process.argv.slice(2) }));\n';
    for (const code of [runner, `${runner}// ${incompressibleRunner(150_000)}`]) {
      const { objects } = synth(loadSpecFile(EXAMPLE), code);
      const dir = scriptDirectory(objects, 'loader');
      const run = spawnSync(process.execPath, [join(dir, 'load-runner.js'), '--config', 'c.json', '--resume'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
      expect(run.stderr).toBe('');
      expect(JSON.parse(run.stdout)).toEqual({ main: true, file: 'runner.js', args: ['--config', 'c.json', '--resume'] });
    }
  });

  describe('the loader refuses, in one line and before any of the runner runs,', () => {
    const RAN = 'the runner ran';
    /** A three-part runner that would print RAN, in a directory; `change` alters it before the loader runs. */
    function refusal(change: (dir: string) => void): { status: number | null; stdout: string; stderr: string } {
      const { objects } = synth(loadSpecFile(EXAMPLE), `console.log(${JSON.stringify(RAN)});\n// ${incompressibleRunner(150_000)}`);
      expect(runnerConfigMaps(objects)).toHaveLength(3);
      const dir = scriptDirectory(objects, 'refuse');
      change(dir);
      return spawnSync(process.execPath, [join(dir, 'load-runner.js')], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    }
    const REMEDY = '; apply every object synth wrote (kubectl apply -f dist), then start the Job again\n';

    it('a missing part, naming it and its ConfigMap', () => {
      const run = refusal((dir) => rmSync(join(dir, 'runner.js.br.2')));
      expect(run).toMatchObject({ status: 1, stdout: '' });
      expect(run.stderr).toBe(`db-migration: cannot start the runner: runner.js.br.2 (part 2 of 3, from ConfigMap db-migration-runner-2) is missing${REMEDY}`);
    });

    it('a part of another runner, naming it and both digests', () => {
      const other = packRunner(incompressibleRunner(150_000)).parts[2].data;
      const run = refusal((dir) => writeFileSync(join(dir, 'runner.js.br.3'), other));
      expect(run).toMatchObject({ status: 1, stdout: '' });
      const digest = createHash('sha256').update(other).digest('hex');
      expect(run.stderr).toMatch(new RegExp(`^db-migration: cannot start the runner: runner\\.js\\.br\\.3 \\(part 3 of 3, from ConfigMap db-migration-runner-3\\) has sha256 ${digest}, not [0-9a-f]{64}: it is part of another runner; apply every object synth wrote \\(kubectl apply -f dist\\), then start the Job again\\n$`));
    });

    it('a manifest that names a runner other than the parts make up', () => {
      const run = refusal((dir) => {
        const manifest = JSON.parse(readFileSync(join(dir, 'runner.json'), 'utf8'));
        writeFileSync(join(dir, 'runner.json'), JSON.stringify({ ...manifest, sha256: sha256Hex('another runner') }));
      });
      expect(run).toMatchObject({ status: 1, stdout: '' });
      expect(run.stderr).toMatch(new RegExp(`^db-migration: cannot start the runner: the runner put together has sha256 [0-9a-f]{64}, not ${sha256Hex('another runner')}; apply every object`));
      expect(run.stderr.split('\n')).toHaveLength(2);
    });

    it('a missing manifest', () => {
      const run = refusal((dir) => rmSync(join(dir, 'runner.json')));
      expect(run).toMatchObject({ status: 1, stdout: '' });
      expect(run.stderr).toMatch(/^db-migration: cannot start the runner: \/.*\/runner\.json cannot be read \(ENOENT\)\n$/);
    });
  });
});
