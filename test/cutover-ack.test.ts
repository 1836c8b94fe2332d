/**
 * The cutover command always gets its answer: in a Job the runner's exit ends the container, and the kubelet then
 * kills whatever `kubectl exec` started in it. So the runner, once a cutover's outcome is written, waits (bounded)
 * for the command to confirm it has printed it. Here the "container's end" is a SIGKILL of the command's process
 * the moment the runner would exit, the way the kubelet does it: the command must have printed the outcome and
 * exited with its code by then. The real cluster shows the same in test/e2e (kubectl exec of cutover.sh).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { Logger } from '../src/runner/report/log';
import { ACK_WAIT_STOPPED_SECONDS, controlDir, cutoverScript } from '../src/runner/online/control';
import { OnlineCoordinator } from '../src/runner/online/coordinator';
import { CONTAINER_PATHS, workDirPaths, type RuntimeConfig } from '../src/spec/runtime-config';
import { REPO } from './support/cli';
import { makeRuntimeConfig } from './support/runtime-config';

const temps: string[] = [];
const cleanups: Array<() => void> = [];
afterAll(() => { temps.forEach((d) => rmSync(d, { recursive: true, force: true })); cleanups.forEach((c) => c()); });
const tempDir = () => { const d = mkdtempSync(join(tmpdir(), 'dbm-ack-')); temps.push(d); return d; };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const script = (() => {
  const file = join(tempDir(), 'cutover.sh');
  writeFileSync(file, cutoverScript(controlDir(CONTAINER_PATHS.logs)));
  return file;
})();

interface Command { done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>; kill(): void; exited(): boolean }

/** One of the two real commands (the shipped script under sh, or `db-migration cutover`), as its own process. */
function startCommand(kind: 'cutover.sh' | 'db-migration cutover', work: string): Command {
  const child = kind === 'cutover.sh'
    ? spawn('sh', [script], { env: { ...process.env, DBM_CONTROL_DIR: controlDir(workDirPaths(work).logs) }, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [join(REPO, 'bin', 'db-migration.js'), 'cutover', '--work-dir', work], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let exited = false;
  child.stdout!.on('data', (d) => { stdout += d; });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>((resolve) => {
    child.on('close', (code, signal) => { exited = true; resolve({ code, signal, stdout }); });
  });
  return { done, kill: () => { if (!exited) child.kill('SIGKILL'); }, exited: () => exited };
}

/**
 * The runner exits (stop() returns) and the container's end kills what exec started, as the kubelet does: the
 * command's result, and whether it had exited on its own before that kill.
 */
async function runnerExits(coordinator: OnlineCoordinator, command: Command, signal?: AbortSignal) {
  await coordinator.stop(signal);
  const exitedBeforeKill = command.exited();
  command.kill();
  return { exitedBeforeKill, ...await command.done };
}

/** A coordinator as the runner makes it for one database, on a work dir's control directory. */
function coordinatorFor(work: string, cutover: 'manual' | 'auto' = 'manual') {
  const { config, cleanup } = makeRuntimeConfig({
    source: { host: '127.0.0.1', port: 1 }, destination: { host: '127.0.0.1', port: 1 },
    databases: [{ name: 'app', source: { database: 'app' }, destination: { database: 'app' } }],
    migration: { mode: 'online', online: { cutover } },
  });
  cleanups.push(cleanup);
  const paths = workDirPaths(work);
  const cfg: RuntimeConfig = { ...config, paths: { ...config.paths, logs: paths.logs } };
  const out = new PassThrough();
  let log = '';
  out.on('data', (d) => { log += d; });
  const coordinator = new OnlineCoordinator(cfg, ['app'], Logger.create({ out }), 'Cut over with: …');
  return { coordinator, log: () => log, control: controlDir(paths.logs) };
}

/** Plays the runner's catch-up loop for "app": ready, takes the ticket when the request comes, ends as told. */
async function cutOverWhenAsked(coordinator: OnlineCoordinator, ok: boolean): Promise<void> {
  coordinator.update('app', { state: 'replicating', ready: true, status: 'lag 0 B' });
  for (let i = 0; i < 400; i++) {
    const ticket = coordinator.ticketFor('app');
    if (ticket) {
      ticket.report('fence: database app on the source is read-only for new transactions');
      await sleep(100);
      ticket.report(ok ? 'cut over: write pause 0.42s (fence to verified)' : 'cutover failed: the index customers_country_idx differs');
      coordinator.finished('app', ticket, ok, ok ? 0.42 : undefined);
      return;
    }
    await sleep(50);
  }
  throw new Error('no cutover request reached the coordinator within 20 s');
}

describe.each(['cutover.sh', 'db-migration cutover'] as const)('%s against the runner\'s coordinator', (kind) => {
  it('given a cutover that succeeds, when the runner exits right after it and the container\'s end kills the command, then the command has already printed the outcome and exited 0', async () => {
    const work = tempDir();
    const { coordinator, log } = coordinatorFor(work);
    await coordinator.start();
    const command = startCommand(kind, work);
    await cutOverWhenAsked(coordinator, true);
    // The run ends: the runner exits as soon as stop() returns; the kubelet then kills what exec started.
    const res = await runnerExits(coordinator, command);
    expect(res.exitedBeforeKill).toBe(true);
    expect(res.signal).toBeNull();
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('[app] cut over: write pause 0.42s (fence to verified)\n');
    expect(res.stdout).toMatch(/cutover succeeded: every database is cut over; longest write pause 0\.4s\n$/);
    expect(log()).not.toContain('did not confirm');
  });

  it('given a cutover asked for before every database is ready, then it waits, cuts over once ready, and the command prints the outcome and exits 0 before the runner exits', async () => {
    const work = tempDir();
    const { coordinator } = coordinatorFor(work);
    await coordinator.start();
    coordinator.update('app', { state: 'replicating', ready: false, status: 'catching up' });
    await sleep(1100); // the next heartbeat says "replicating"
    const command = startCommand(kind, work);
    // The runner takes the request while "app" still catches up (its 1 s tick); nothing cuts over yet.
    await sleep(2500);
    expect(coordinator.ticketFor('app')).toBeUndefined();
    expect(command.exited()).toBe(false);
    await cutOverWhenAsked(coordinator, true);
    const res = await runnerExits(coordinator, command);
    expect(res.exitedBeforeKill).toBe(true);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^cutover \S+ requested \(the runner is replicating; it cuts over once every database is ready\)\n/);
    expect(res.stdout).toMatch(/cutover succeeded: every database is cut over; longest write pause 0\.4s\n$/);
  });

  it('given the run ends while a cutover request is still open, then the command is told it failed, prints why and exits 1 before the runner exits', async () => {
    const work = tempDir();
    const { coordinator } = coordinatorFor(work);
    await coordinator.start();
    coordinator.update('app', { state: 'replicating', ready: false, status: 'catching up' });
    const command = startCommand(kind, work);
    // The runner takes the request (its 1 s tick), then the database stops (SIGTERM, a failure) without cutting over.
    await sleep(2500);
    const stopped = new AbortController();
    stopped.abort();
    coordinator.leave('app');
    const res = await runnerExits(coordinator, command, stopped.signal);
    expect(res.exitedBeforeKill).toBe(true);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/cutover failed: app stopped before cutting over: the log says why\n$/);
  });

  it('given a failed cutover, then the command exits 1 with the reason while the runner goes on, and a second command after the fix exits 0', async () => {
    const work = tempDir();
    const { coordinator } = coordinatorFor(work);
    await coordinator.start();
    const first = startCommand(kind, work);
    await cutOverWhenAsked(coordinator, false);
    const failed = await first.done;
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('[app] cutover failed: the index customers_country_idx differs\n');
    expect(failed.stdout).toMatch(/cutover failed: failed for app: the fence is lifted and replication goes on; fix what the log names and run the cutover again\n$/);
    const second = startCommand(kind, work);
    await cutOverWhenAsked(coordinator, true);
    await coordinator.stop();
    second.kill();
    const res = await second.done;
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/cutover succeeded: every database is cut over/);
  });

  it('given a command started after the runner finished, then it prints the last cutover\'s outcome instead of asking again', async () => {
    const work = tempDir();
    const { coordinator, control } = coordinatorFor(work);
    await coordinator.start();
    const first = startCommand(kind, work);
    await cutOverWhenAsked(coordinator, true);
    await coordinator.stop();
    expect((await first.done).code).toBe(0);
    const late = await startCommand(kind, work).done;
    expect(late.stdout).toMatch(/^the runner has finished; the last cutover \(\S+\) succeeded: every database is cut over; longest write pause 0\.4s\n$/);
    expect(late.code).toBe(0);
    expect(existsSync(join(control, 'cutover-request'))).toBe(false);
  });
});

describe('the runner\'s wait for the command', () => {
  it('given a command that never confirms (stopped with Ctrl-C), then a stopped runner waits only ACK_WAIT_STOPPED_SECONDS and says the summary has the outcome', async () => {
    const work = tempDir();
    const { coordinator, log, control } = coordinatorFor(work);
    await coordinator.start();
    const command = startCommand('cutover.sh', work);
    // Ctrl-C as soon as the request is written: the command is gone before the outcome.
    for (let i = 0; i < 100 && !existsSync(join(control, 'cutover-request')); i++) await sleep(20);
    command.kill();
    await command.done;
    await cutOverWhenAsked(coordinator, true);
    const stopped = new AbortController();
    stopped.abort();
    await coordinator.stop(stopped.signal);
    expect(log()).toMatch(new RegExp(`waiting up to ${ACK_WAIT_STOPPED_SECONDS}s for the cutover command \\(request \\S+\\) to print the outcome before exiting`));
    expect(log()).toMatch(/the cutover command \(request \S+\) did not confirm it printed the outcome: the summary below and the termination message have it/);
    expect(readFileSync(join(control, 'heartbeat'), 'utf8')).toMatch(/^finished /);
  });

  it('given cutover: auto, then nobody is waited for', async () => {
    const work = tempDir();
    const { coordinator, log } = coordinatorFor(work, 'auto');
    await coordinator.start();
    coordinator.update('app', { state: 'replicating', ready: true, status: 'lag 0 B' });
    const ticket = coordinator.ticketFor('app')!;
    expect(ticket.id).toBe('auto');
    coordinator.finished('app', ticket, true, 0.3);
    await coordinator.stop();
    expect(log()).not.toContain('waiting up to');
    expect(existsSync(join(controlDir(workDirPaths(work).logs), 'cutover-last.result'))).toBe(false);
  });
});
