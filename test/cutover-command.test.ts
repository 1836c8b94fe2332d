/**
 * The operator's cutover command against a runner: a fake runner made of the real CutoverControl (heartbeat, take
 * the request, append progress lines, finish) in a temp control directory, and each client of the same file
 * protocol: requestCutover in-process, `db-migration cutover --work-dir DIR` as a real process, and the shell
 * script the script ConfigMap ships, under every POSIX shell installed here.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { synthManifests } from '../src/chart';
import { controlDir, CutoverControl, cutoverScript, requestCutover } from '../src/runner/online/control';
import { loadSpecFile } from '../src/spec/load';
import { CONTAINER_PATHS, workDirPaths } from '../src/spec/runtime-config';
import { REPO, runCli } from './support/cli';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDir = (prefix: string) => { const d = mkdtempSync(join(tmpdir(), `dbm-cutover-${prefix}-`)); temps.push(d); return d; };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The example's script ConfigMap and Job, with a stand-in runner (these tests are about the cutover script). */
const objects = synthManifests(loadSpecFile(join(REPO, 'migration.yaml')), { runnerBundle: 'console.log("runner stand-in");\n' }).objects as Obj[];
const scriptConfigMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'db-migration-script')!;
const SHIPPED_SCRIPT: string = scriptConfigMap.data['cutover.sh'];

/** A work dir as `db-migration migrate --work-dir` lays it out, and its control directory. */
function workDir(): { work: string; control: string } {
  const work = tempDir('work');
  return { work, control: controlDir(workDirPaths(work).logs) };
}

/** Backdates the heartbeat's mtime by two minutes: what a runner that stopped a while ago leaves. */
function staleHeartbeat(control: string): void {
  const past = new Date(Date.now() - 120_000);
  utimesSync(join(control, 'heartbeat'), past, past);
}

interface FakeRunnerPlan {
  /** Progress lines the runner appends, one every 100 ms. */
  readonly lines: string[];
  /** How it ends: finished ok or failed with this message, or stopped (no more heartbeats, one left stale). */
  readonly end: { ok: boolean; message: string } | 'stops' | 'never';
}

/**
 * A runner waiting to cut over, made of the real CutoverControl: heartbeats every 50 ms, takes the request, appends
 * its lines while still heartbeating, then ends as planned. `taken` resolves with the request id it took.
 */
function fakeRunner(control: string, plan: FakeRunnerPlan) {
  const runner = new CutoverControl(control);
  let stopped = false;
  let beating = true;
  let takenId: string | undefined;
  const ready = runner.init().then(() => runner.heartbeat('ready', 'pharia_temporal: lag 0 B'));
  const heartbeats = (async () => {
    await ready;
    while (!stopped) {
      if (beating) await runner.heartbeat(takenId ? 'cutting-over' : 'ready');
      await sleep(50);
    }
  })();
  const work = (async () => {
    await ready;
    while (!stopped && takenId === undefined) {
      takenId = await runner.takeRequest();
      if (takenId === undefined) await sleep(50);
    }
    if (takenId === undefined) return undefined;
    for (const line of plan.lines) {
      await sleep(100);
      await runner.log(takenId, line);
    }
    if (plan.end === 'stops') {
      beating = false;
      await sleep(60); // let a heartbeat already being written land first
      staleHeartbeat(control);
    } else if (plan.end !== 'never') {
      await sleep(100);
      await runner.finish(takenId, plan.end.ok, plan.end.message);
    }
    return takenId;
  })();
  return {
    ready,
    taken: work,
    finish: async (ok: boolean, message: string) => runner.finish((await work)!, ok, message),
    stop: async () => { stopped = true; await Promise.all([heartbeats, work]); },
  };
}

interface Run { code: number | null; stdout: string; stderr: string }

/** Runs a command without blocking this process's event loop (the fake runner lives in it). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, onStart?: (child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
    onStart?.(child);
  });
}

const hasShell = (argv: string[]) => spawnSync(argv[0], [...argv.slice(1), '-c', 'exit 0']).status === 0;
const WANTED_SHELLS: string[][] = [['sh'], ['bash', '--posix'], ['dash'], ['busybox', 'sh']];
// Under CI every shell must be there (.ci/run installs busybox-static): a missing one fails instead of being left out.
const SHELLS: string[][] = process.env.CI === 'true' ? WANTED_SHELLS : WANTED_SHELLS.filter(hasShell);

interface Client {
  readonly name: string;
  /** Asks for the cutover in the work dir; stdout and the exit code. */
  request(work: { work: string; control: string }): Promise<Run>;
}

const scriptFile = (() => {
  let file: string | undefined;
  return () => {
    if (!file) { file = join(tempDir('script'), 'cutover.sh'); writeFileSync(file, SHIPPED_SCRIPT); }
    return file;
  };
})();

const CLIENTS: Client[] = [
  {
    name: 'requestCutover (in-process)',
    async request({ control }) {
      let stdout = '';
      const out = new Writable({ write(chunk, _e, done) { stdout += chunk; done(); } });
      const code = await requestCutover({ dir: control, out, pollMs: 20 });
      return { code, stdout, stderr: '' };
    },
  },
  {
    name: 'db-migration cutover --work-dir DIR (process)',
    request: ({ work }) => run(process.execPath, [join(REPO, 'bin', 'db-migration.js'), 'cutover', '--work-dir', work]),
  },
  ...SHELLS.map((shell): Client => ({
    name: `cutover.sh from the script ConfigMap under ${shell.join(' ')}`,
    request: ({ control }) => run(shell[0], [...shell.slice(1), scriptFile()], { DBM_CONTROL_DIR: control }),
  })),
];

describe.each(CLIENTS)('$name', (client) => {
  it('given a ready runner, when the cutover succeeds, then it prints the runner\'s progress lines in order and exits 0', async () => {
    const dirs = workDir();
    const lines = ['pharia_temporal: source fenced (default_transaction_read_only)', 'pharia_temporal: lag 0 B, replication stopped', 'pharia_temporal: sequences set'];
    const runner = fakeRunner(dirs.control, { lines, end: { ok: true, message: 'every database cut over; point the applications at the destination' } });
    await runner.ready;
    try {
      const res = await client.request(dirs);
      const id = await runner.taken;
      expect(res.stdout.split('\n')).toEqual([
        expect.stringMatching(new RegExp(`^cutover ${id} requested \\(the runner is ready`)),
        ...lines,
        'cutover succeeded: every database cut over; point the applications at the destination',
        '',
      ]);
      expect(res.code).toBe(0);
    } finally {
      await runner.stop();
    }
  });

  it('fails with exit 1 and the runner\'s message when the cutover fails', async () => {
    const dirs = workDir();
    const runner = fakeRunner(dirs.control, { lines: ['pharia_temporal: source fenced'], end: { ok: false, message: 'pharia_temporal: lag did not reach 0 within 60s; the source is writable again' } });
    await runner.ready;
    try {
      const res = await client.request(dirs);
      expect(res.stdout).toContain('pharia_temporal: source fenced\n');
      expect(res.stdout).toMatch(/cutover failed: pharia_temporal: lag did not reach 0 within 60s; the source is writable again\n$/);
      expect(res.code).toBe(1);
    } finally {
      await runner.stop();
    }
  });

  it('fails with exit 2 when no runner ever wrote a heartbeat, and requests nothing', async () => {
    const dirs = workDir();
    await new CutoverControl(dirs.control).init();
    const res = await client.request(dirs);
    expect(res.stdout).toMatch(/^no online migration is running here: .*\/logs\/online\/heartbeat is missing\n$/);
    expect(res.code).toBe(2);
    expect(readdirSync(dirs.control)).toEqual([]);
  });

  it('fails with exit 2 when the heartbeat is two minutes old, and requests nothing', async () => {
    const dirs = workDir();
    const runner = new CutoverControl(dirs.control);
    await runner.init();
    await runner.heartbeat('ready');
    staleHeartbeat(dirs.control);
    const res = await client.request(dirs);
    expect(res.stdout).toMatch(/^no runner is waiting: its (last )?heartbeat .*(old|ago)/);
    expect(res.code).toBe(2);
    expect(readdirSync(dirs.control)).toEqual(['heartbeat']);
  });

  it('fails with exit 1 when the runner stops answering in the middle of the cutover, after printing what it did', async () => {
    const dirs = workDir();
    const runner = fakeRunner(dirs.control, { lines: ['pharia_temporal: source fenced'], end: 'stops' });
    await runner.ready;
    try {
      const res = await client.request(dirs);
      expect(res.stdout).toMatch(/\npharia_temporal: source fenced\nthe runner stopped answering before the cutover finished: see its log\n$/);
      expect(res.code).toBe(1);
    } finally {
      await runner.stop();
    }
  });
});

describe('db-migration cutover', () => {
  it('given Ctrl-C while the runner cuts over, then it stops waiting with 130 and says the cutover goes on, which it does', async () => {
    const dirs = workDir();
    const runner = fakeRunner(dirs.control, { lines: ['pharia_temporal: source fenced'], end: 'never' });
    await runner.ready;
    try {
      const res = await run(process.execPath, [join(REPO, 'bin', 'db-migration.js'), 'cutover', '--work-dir', dirs.work], {}, (child) => {
        child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('source fenced')) child.kill('SIGINT'); });
      });
      expect(res.code).toBe(130);
      expect(res.stderr).toContain('stopped waiting; the cutover was not cancelled: the runner goes on with it');
      // The request was the runner's to finish: it still can.
      await runner.finish(true, 'done');
      expect(existsSync(join(dirs.control, `cutover-${await runner.taken}.result`))).toBe(true);
    } finally {
      await runner.stop();
    }
  });

  it('fails without --work-dir with exit 2 and a sentence', async () => {
    const res = await runCli(['cutover']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('cutover needs --work-dir DIR');
  });

  it('is listed in the usage text, with the in-cluster command at the path the Job mounts the script ConfigMap at', async () => {
    const usage = (await runCli(['--help'])).stdout;
    expect(usage).toMatch(/^ {2}db-migration cutover {2}--work-dir DIR {2,}\S/m);
    const pod = objects.find((o) => o.kind === 'Job')!.spec.template.spec;
    const volume = pod.volumes.find((v: Obj) => v.projected?.sources.some((s: Obj) => s.configMap?.name === scriptConfigMap.metadata.name)).name;
    const mount = pod.containers[0].volumeMounts.find((m: Obj) => m.name === volume).mountPath;
    expect(pod.containers[0].name).toBe(objects.find((o) => o.kind === 'Job')!.spec.template.metadata.annotations['kubectl.kubernetes.io/default-container']);
    expect(usage).toContain(`kubectl -n NAMESPACE exec job/NAME -- sh ${mount}/cutover.sh`);
  });
});

describe('the script ConfigMap\'s cutover.sh', () => {
  it('is cutoverScript for the container\'s logs volume', () => {
    expect(SHIPPED_SCRIPT).toBe(cutoverScript(controlDir(CONTAINER_PATHS.logs)));
    expect(SHIPPED_SCRIPT).toContain('dir="${DBM_CONTROL_DIR:-/var/log/db-migration/online}"');
  });

  it('passes sh -n under every shell here', () => {
    expect(SHELLS.length).toBeGreaterThan(0);
    for (const shell of SHELLS) {
      expect(spawnSync(shell[0], [...shell.slice(1), '-n', scriptFile()], { encoding: 'utf8' }).stderr, shell.join(' ')).toBe('');
    }
  });
});
