/** The client tools: pg_dump refuses a server newer than itself, and pg_restore must read what it wrote. */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { runTool } from '../../postgres/exec';
import type { ClientToolVersion } from './preflight-types';

/** Where a tool is run from: `binDir/<tool>` when a directory is given (as the plan runs it), else PATH. */
export function locateTool(tool: string, binDir: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (binDir) return isExecutable(join(binDir, tool)) ? join(binDir, tool) : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    if (isExecutable(join(dir, tool))) return join(dir, tool);
  }
  return undefined;
}

/** Runs `<tool> --version` and parses "pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)". */
export async function clientToolVersion(tool: 'pg_dump' | 'pg_restore', binDir: string | undefined, env: NodeJS.ProcessEnv): Promise<ClientToolVersion> {
  const path = locateTool(tool, binDir, env);
  if (!path) {
    return { tool, path: binDir ? join(binDir, tool) : tool, error: binDir ? `not found in ${binDir}` : 'not found on PATH' };
  }
  // Spawned like every other tool (postgres/exec.ts): own process group, bounded time, output streamed by line.
  const stdout: string[] = [];
  const output = await runTool({
    cmd: path, args: ['--version'], env: { ...env, LC_ALL: 'C' }, timeoutMs: 15_000, phase: 'preflight', killGraceMs: 1000,
    onStdoutLine: (line) => { if (stdout.length < 20) stdout.push(line); },
  }).then(() => stdout.join('\n'), (err: Error) => `ERROR ${err.message}`);
  const parsed = parseToolVersion(output);
  if (!parsed) return { tool, path, error: `cannot read its version from "${output.trim().slice(0, 200)}"` };
  return { tool, path, ...parsed };
}

export function parseToolVersion(output: string): { version: string; versionNum: number } | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(output);
  if (!m) return undefined;
  const [a, b, c] = [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
  const versionNum = a >= 10 ? a * 10000 + b : a * 10000 + b * 100 + c;
  return { version: [m[1], m[2], m[3]].filter((x) => x !== undefined).join('.'), versionNum };
}

/** The major release of a server_version_num-like number: 150004 → 150000, 90624 → 90600. */
export function majorOf(versionNum: number): number {
  return versionNum >= 100000 ? Math.floor(versionNum / 10000) * 10000 : Math.floor(versionNum / 100) * 100;
}

/** "15" or "9.6". */
export function majorLabel(versionNum: number): string {
  return versionNum >= 100000 ? String(Math.floor(versionNum / 10000)) : `${Math.floor(versionNum / 10000)}.${Math.floor(versionNum / 100) % 100}`;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
