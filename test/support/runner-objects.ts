/**
 * The runner as synth writes it: its ConfigMaps (`<name>-runner-<n>`, one compressed part each), what the loader
 * makes of them, and the pod's script volume as a directory.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import { expect } from 'vitest';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The runner's ConfigMaps, in order. */
export const runnerConfigMaps = (objects: Obj[]) => objects.filter((o) => o.kind === 'ConfigMap' && /-runner-\d+$/.test(o.metadata.name));

/** What the loader runs: the parts (from the runner's ConfigMaps, in order) put together and unpacked. */
export function unpacked(objects: Obj[]): string {
  const parts = runnerConfigMaps(objects).map((cm, i) => {
    expect(Object.keys(cm.binaryData)).toEqual([`runner.js.br.${i + 1}`]);
    return Buffer.from(cm.binaryData[`runner.js.br.${i + 1}`], 'base64');
  });
  return brotliDecompressSync(Buffer.concat(parts)).toString('utf8');
}

/** Writes every file of the pod's script volume (the script ConfigMap's and the runner's ConfigMaps') into `dir`. */
export function writeScriptVolume(objects: Obj[], dir: string): string {
  const script = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-script'))!;
  for (const [key, text] of Object.entries<string>(script.data)) writeFileSync(join(dir, key), text);
  for (const cm of runnerConfigMaps(objects)) {
    for (const [key, base64] of Object.entries<string>(cm.binaryData)) writeFileSync(join(dir, key), Buffer.from(base64, 'base64'));
  }
  return dir;
}

/** A JavaScript program of random text that compresses poorly (to stand in for a runner that grew large). */
export function incompressibleRunner(bytes: number): string {
  return `console.log(${JSON.stringify(randomBytes(bytes).toString('base64'))}.length);\n`;
}
