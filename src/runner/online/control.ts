/**
 * How the operator's cutover command reaches the runner: files in a control directory (`<logs>/online`, an
 * emptyDir in the Job, so `kubectl exec job/NAME -- sh .../cutover.sh` and `db-migration cutover --work-dir DIR`
 * work the same way and need nothing but a shell):
 *
 *   heartbeat            the runner rewrites it every few seconds: "<state> <ISO time>" (a stale one: no runner)
 *   status               the runner's latest lag line per database (for people)
 *   cutover-request      written (by rename) by the command: one line, the request id
 *   cutover-<id>.log     the cutover's progress lines, appended by the runner
 *   cutover-<id>.result  "ok" or "failed", then a line of explanation; written (by rename) when it is over
 *   cutover-<id>.ack     written (by rename) by the command once it has printed the outcome: the runner, which
 *                        ends the container when it exits (and with it whatever `kubectl exec` started there),
 *                        waits for it, bounded, before it exits
 *   cutover-last.result  the last request's id, then its result: what a command started after the runner
 *                        finished prints
 */
import { appendFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const CONTROL_SUBDIR = 'online';
/** A heartbeat older than this means no runner is waiting. */
export const HEARTBEAT_STALE_SECONDS = 60;
/**
 * How long the runner, about to exit, waits for the command to confirm it has printed a cutover's outcome. The
 * command reads it within a second (it polls); this covers a slow API server relaying `kubectl exec`.
 */
export const ACK_WAIT_SECONDS = 30;
/** The same wait when the runner was stopped (SIGTERM: the kubelet's grace period runs, 30 s by default). */
export const ACK_WAIT_STOPPED_SECONDS = 5;
/** After the confirmation, the command still has to exit: the runner gives it this long before it does. */
export const ACK_GRACE_MS = 1000;

export type RunnerState = 'copying' | 'replicating' | 'ready' | 'cutting-over' | 'finished';

export function controlDir(logsDir: string): string {
  return join(logsDir, CONTROL_SUBDIR);
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/** The runner's side. */
export class CutoverControl {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    // A request left by an earlier attempt is not this run's: the operator asks again once this run is ready.
    await rm(join(this.dir, 'cutover-request'), { force: true });
  }

  async heartbeat(state: RunnerState, status?: string): Promise<void> {
    await writeAtomic(join(this.dir, 'heartbeat'), `${state} ${new Date().toISOString()}\n`);
    if (status !== undefined) await writeAtomic(join(this.dir, 'status'), status.endsWith('\n') ? status : `${status}\n`);
  }

  /** Takes the pending request, if any: its id. */
  async takeRequest(): Promise<string | undefined> {
    const path = join(this.dir, 'cutover-request');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      return undefined;
    }
    await rm(path, { force: true });
    const id = text.trim().split('\n')[0]?.replace(/[^A-Za-z0-9_.-]/g, '') || `r${Date.now()}`;
    return id;
  }

  async log(id: string, line: string): Promise<void> {
    await appendFile(join(this.dir, `cutover-${id}.log`), line.endsWith('\n') ? line : `${line}\n`);
  }

  async finish(id: string, ok: boolean, message: string): Promise<void> {
    const result = `${ok ? 'ok' : 'failed'}\n${message}\n`;
    await writeAtomic(join(this.dir, 'cutover-last.result'), `${id}\n${result}`);
    await writeAtomic(join(this.dir, `cutover-${id}.result`), result);
  }

  /** Whether the command that asked for `id` has confirmed it printed the outcome. */
  async acknowledged(id: string): Promise<boolean> {
    return stat(join(this.dir, `cutover-${id}.ack`)).then(() => true, () => false);
  }

  /**
   * Waits until the command that asked for `id` confirms it has printed the outcome (true), at most `seconds`,
   * then gives it up to ACK_GRACE_MS from its confirmation to exit. False when it did not confirm (it was stopped, or never asked again).
   */
  async awaitAck(id: string, seconds: number, signal?: AbortSignal, pollMs = 100): Promise<boolean> {
    const path = join(this.dir, `cutover-${id}.ack`);
    const deadline = Date.now() + seconds * 1000;
    while (Date.now() < deadline && !signal?.aborted) {
      const ack = await stat(path).catch(() => undefined);
      if (ack) {
        // A confirmation written just now: its command is still exiting.
        await new Promise((r) => setTimeout(r, Math.max(0, ACK_GRACE_MS - (Date.now() - ack.mtimeMs))));
        return true;
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
    return false;
  }
}

/** The command's side: a fresh request id. */
export function newRequestId(): string {
  return `${Date.now().toString(36)}-${process.pid}`;
}

export interface CutoverCommandOptions {
  readonly dir: string;
  readonly out: NodeJS.WritableStream;
  /** @default 1000 */
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Requests the cutover, prints its progress lines as the runner writes them, and resolves with the exit code:
 * 0 when it succeeded, 1 when it failed, 2 when no runner is waiting.
 */
export async function requestCutover(opts: CutoverCommandOptions): Promise<number> {
  const { dir, out } = opts;
  const beat = await readHeartbeat(dir);
  if (!beat) {
    out.write(`no online migration is running here: ${join(dir, 'heartbeat')} is missing\n`);
    return 2;
  }
  if (beat.ageSeconds > HEARTBEAT_STALE_SECONDS) {
    out.write(`no runner is waiting: its last heartbeat (${beat.state}) is ${Math.round(beat.ageSeconds)}s old\n`);
    return 2;
  }
  if (beat.state === 'finished') return printLastResult(dir, out);
  const id = newRequestId();
  await writeAtomic(join(dir, 'cutover-request'), `${id}\n`);
  out.write(`cutover ${id} requested (the runner is ${beat.state}${beat.state === 'ready' ? '' : '; it cuts over once every database is ready'})\n`);
  let printed = 0;
  for (;;) {
    printed = await printNew(join(dir, `cutover-${id}.log`), printed, out);
    const result = await readFile(join(dir, `cutover-${id}.result`), 'utf8').catch(() => undefined);
    if (result !== undefined) {
      await printNew(join(dir, `cutover-${id}.log`), printed, out);
      const [status, ...rest] = result.trim().split('\n');
      out.write(`${status === 'ok' ? 'cutover succeeded' : 'cutover failed'}: ${rest.join(' ')}\n`);
      await writeAtomic(join(dir, `cutover-${id}.ack`), 'printed\n').catch(() => undefined);
      return status === 'ok' ? 0 : 1;
    }
    const now = await readHeartbeat(dir);
    if (!now || now.ageSeconds > HEARTBEAT_STALE_SECONDS) {
      out.write('the runner stopped answering before the cutover finished: see its log\n');
      return 1;
    }
    if (opts.signal?.aborted) return 1;
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 1000));
  }
}

/** The runner has finished: no request can be taken any more; the last one's outcome, if there was one. */
async function printLastResult(dir: string, out: NodeJS.WritableStream): Promise<number> {
  const last = await readFile(join(dir, 'cutover-last.result'), 'utf8').catch(() => undefined);
  if (!last) {
    out.write('the runner has finished without a cutover request: its log and summary say how it ended\n');
    return 2;
  }
  const [id, status, ...rest] = last.trim().split('\n');
  out.write(`the runner has finished; the last cutover (${id}) ${status === 'ok' ? 'succeeded' : 'failed'}: ${rest.join(' ')}\n`);
  return status === 'ok' ? 0 : 1;
}

async function printNew(path: string, from: number, out: NodeJS.WritableStream): Promise<number> {
  const buf = await readFile(path).catch(() => undefined);
  if (!buf || buf.length <= from) return from;
  // Whole lines only: the runner may be writing the next one.
  const end = buf.lastIndexOf(0x0a) + 1;
  if (end <= from) return from;
  out.write(buf.subarray(from, end));
  return end;
}

/** The heartbeat's age is its file's mtime, as the shell client (find -mmin +1) sees it: both clients agree on "stale". */
async function readHeartbeat(dir: string): Promise<{ state: string; ageSeconds: number } | undefined> {
  const path = join(dir, 'heartbeat');
  const [text, info] = await Promise.all([readFile(path, 'utf8').catch(() => undefined), stat(path).catch(() => undefined)]);
  if (!text || !info) return undefined;
  const [state] = text.trim().split(' ');
  return { state, ageSeconds: (Date.now() - info.mtimeMs) / 1000 };
}

/** The shell version shipped in the script ConfigMap (the helper image has no node): same protocol. */
export function cutoverScript(defaultDir: string): string {
  return `#!/bin/sh
# Cuts an online migration over: kubectl -n NAMESPACE exec job/NAME -- sh ${'$'}{0}
# Exits 0 only when the cutover succeeded (see the README, "Online migration").
set -u
dir="\${DBM_CONTROL_DIR:-${defaultDir}}"
if [ ! -f "$dir/heartbeat" ]; then echo "no online migration is running here: $dir/heartbeat is missing"; exit 2; fi
if [ -n "$(find "$dir/heartbeat" -mmin +1 2>/dev/null)" ]; then echo "no runner is waiting: its heartbeat is over a minute old"; exit 2; fi
if [ "$(cut -d' ' -f1 "$dir/heartbeat")" = finished ]; then
  if [ ! -f "$dir/cutover-last.result" ]; then echo "the runner has finished without a cutover request: its log and summary say how it ended"; exit 2; fi
  last_id=$(head -n 1 "$dir/cutover-last.result"); last_status=$(sed -n 2p "$dir/cutover-last.result")
  if [ "$last_status" = ok ]; then word=succeeded; else word=failed; fi
  echo "the runner has finished; the last cutover ($last_id) $word: $(tail -n +3 "$dir/cutover-last.result")"
  [ "$last_status" = ok ] && exit 0; exit 1
fi
id="$(date +%s)-$$"
printf '%s\\n' "$id" > "$dir/cutover-request.$$.tmp" && mv "$dir/cutover-request.$$.tmp" "$dir/cutover-request"
state=$(cut -d' ' -f1 "$dir/heartbeat")
if [ "$state" = ready ]; then echo "cutover $id requested (the runner is ready)"; else echo "cutover $id requested (the runner is $state; it cuts over once every database is ready)"; fi
printed=0
show() {
  [ -f "$dir/cutover-$id.log" ] || return 0
  size=$(wc -c < "$dir/cutover-$id.log")
  if [ "$size" -gt "$printed" ]; then tail -c +$((printed + 1)) "$dir/cutover-$id.log" | head -c $((size - printed)); printed=$size; fi
}
while :; do
  show
  if [ -f "$dir/cutover-$id.result" ]; then
    show
    status=$(head -n 1 "$dir/cutover-$id.result")
    if [ "$status" = ok ]; then echo "cutover succeeded: $(tail -n +2 "$dir/cutover-$id.result")"; else echo "cutover failed: $(tail -n +2 "$dir/cutover-$id.result")"; fi
    # Printed: the runner, which waits for this before it ends the container (and this script with it), may go.
    echo printed > "$dir/cutover-$id.ack.$$.tmp" && mv "$dir/cutover-$id.ack.$$.tmp" "$dir/cutover-$id.ack"
    [ "$status" = ok ] && exit 0; exit 1
  fi
  if [ -n "$(find "$dir/heartbeat" -mmin +1 2>/dev/null)" ]; then echo "the runner stopped answering before the cutover finished: see its log"; exit 1; fi
  sleep 1
done
`;
}
