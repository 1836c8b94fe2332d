import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runTool, ToolAbortedError, ToolFailedError, ToolSpawnError, ToolTimeoutError } from '../src/runner/postgres/exec';

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

/** True when the process is gone or a zombie (exited, waiting to be reaped by init). */
function isDead(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return true;
  try {
    const state = readFileSync(stat, 'utf8').split(') ')[1]?.[0];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

async function waitDead(pids: number[], ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (pids.every(isDead)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return pids.every(isDead);
}

describe('runTool', () => {
  it('resolves with exit code 0 and streams stdout and stderr line by line', async () => {
    // given a tool that writes lines to both streams
    const out: string[] = [];
    const err: string[] = [];
    // when it runs
    const res = await runTool({
      cmd: 'sh', args: ['-c', 'echo one; echo two >&2; printf "three"; printf "four\\n" >&2'], env,
      onStdoutLine: (l) => out.push(l), onStderrLine: (l) => err.push(l),
    });
    // then
    expect(res.exitCode).toBe(0);
    expect(res.signal).toBeNull();
    expect(out).toEqual(['one', 'three']);
    expect(err).toEqual(['two', 'four']);
    expect(res.stderrTail).toEqual(['two', 'four']);
  });

  it('fails with ToolFailedError carrying the exit code and only the last stderr lines', async () => {
    const p = runTool({ cmd: 'sh', args: ['-c', 'for i in $(seq 1 50); do echo "line $i" >&2; done; exit 3'], env, tailLines: 5 });
    const e = await p.then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(ToolFailedError);
    const f = e as ToolFailedError;
    expect(f.exitCode).toBe(3);
    expect(f.stderrTail).toEqual(['line 46', 'line 47', 'line 48', 'line 49', 'line 50']);
    expect(f.message).toContain('exited with code 3');
    expect(f.message).toContain('line 50');
    expect(f.stderr).toContain('line 46');
  });

  it('redacts secret values from captured and forwarded output', async () => {
    const seen: string[] = [];
    const e = await runTool({
      cmd: 'sh', args: ['-c', 'echo "password is $SECRET_PW" >&2; echo "stdout $SECRET_PW"; exit 1'],
      env: { ...env, SECRET_PW: 's3cr3t-Value' }, secrets: ['s3cr3t-Value'],
      onStderrLine: (l) => seen.push(l), onStdoutLine: (l) => seen.push(l),
    }).catch((x: ToolFailedError) => x);
    expect(seen.join('\n')).not.toContain('s3cr3t-Value');
    expect(seen).toContain('password is ***');
    expect((e as ToolFailedError).message).not.toContain('s3cr3t-Value');
    expect((e as ToolFailedError).stderrTail).toEqual(['password is ***']);
  });

  it('passes only the given environment', async () => {
    const out: string[] = [];
    await runTool({ cmd: 'sh', args: ['-c', 'echo "[$HOME_MARKER][$ONLY_THIS]"'], env: { ...env, ONLY_THIS: 'yes' }, onStdoutLine: (l) => out.push(l) });
    expect(out).toEqual(['[][yes]']);
  });

  it('fails with ToolTimeoutError and kills the whole process group on timeout', async () => {
    // given a tool with two background workers
    const pids: number[] = [];
    const started = runTool({
      cmd: 'sh', args: ['-c', 'sleep 30 & echo $!; sleep 30 & echo $!; echo $$; wait'], env,
      timeoutMs: 500, phase: 'dump', onStdoutLine: (l) => pids.push(Number(l)),
    });
    // when the timeout fires
    const e = await started.catch((x: unknown) => x);
    // then the error says which phase timed out, and no process of the group survives
    expect(e).toBeInstanceOf(ToolTimeoutError);
    expect((e as ToolTimeoutError).phase).toBe('dump');
    expect((e as ToolTimeoutError).message).toMatch(/timed out after/);
    expect(pids).toHaveLength(3);
    expect(await waitDead(pids)).toBe(true);
  });

  it('escalates to SIGKILL for a group that ignores SIGTERM', async () => {
    const pids: number[] = [];
    const e = await runTool({
      cmd: 'sh', args: ['-c', 'trap "" TERM; sleep 30 & echo $!; echo $$; wait; wait'], env,
      timeoutMs: 300, killGraceMs: 300, onStdoutLine: (l) => pids.push(Number(l)),
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ToolTimeoutError);
    expect(pids).toHaveLength(2);
    expect(await waitDead(pids)).toBe(true);
  });

  it('fails with ToolAbortedError when the signal aborts, and stops the group', async () => {
    const ac = new AbortController();
    const pids: number[] = [];
    const p = runTool({
      cmd: 'sh', args: ['-c', 'sleep 30 & echo $!; echo $$; wait'], env, signal: ac.signal,
      onStdoutLine: (l) => { pids.push(Number(l)); if (pids.length === 2) ac.abort(); },
    });
    const e = await p.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ToolAbortedError);
    expect(await waitDead(pids)).toBe(true);
  });

  it('fails at once when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(runTool({ cmd: 'sh', args: ['-c', 'exit 0'], env, signal: ac.signal })).rejects.toBeInstanceOf(ToolAbortedError);
  });

  it('fails with ToolSpawnError for a missing program', async () => {
    const e = await runTool({ cmd: '/nonexistent/pg_dump', args: [], env }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ToolSpawnError);
    expect((e as Error).message).toMatch(/cannot start pg_dump: not found/);
  });

  it('reports a tool killed by a signal it did not get from the runner', async () => {
    const e = await runTool({ cmd: 'sh', args: ['-c', 'kill -9 $$'], env }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ToolFailedError);
    expect((e as ToolFailedError).signal).toBe('SIGKILL');
    expect((e as ToolFailedError).message).toMatch(/killed by SIGKILL/);
  });

  it('keeps memory flat for a long line without newline (line capped)', async () => {
    const lines: string[] = [];
    await runTool({ cmd: 'sh', args: ['-c', 'head -c 2000000 /dev/zero | tr "\\0" a; echo; echo end'], env, onStdoutLine: (l) => lines.push(l) });
    expect(lines).toHaveLength(2);
    expect(lines[0].length).toBeLessThanOrEqual(8192);
    expect(lines[1]).toBe('end');
  });
});
