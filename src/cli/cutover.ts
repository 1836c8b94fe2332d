/**
 * `db-migration cutover --work-dir DIR`: asks the online runner that `db-migration migrate --work-dir DIR` started
 * to cut over, and follows it to the end. The protocol (files in DIR/logs/online) is the runner's, in
 * src/runner/online/control.ts; in the cluster the same request is `kubectl exec job/NAME -- sh .../cutover.sh`.
 */
import { resolve } from 'node:path';
import { Writable } from 'node:stream';
import { controlDir, requestCutover } from '../runner/online/control';
import { workDirPaths } from '../spec/runtime-config';
import { CliError, EXIT, type Io } from './context';

export interface CutoverOptions {
  /** The work directory `db-migration migrate --work-dir` runs in. Required. */
  readonly workDir?: string;
  /** How often the runner's progress is read. @default 1000 ms, requestCutover's own */
  readonly pollMs?: number;
  /** Stops waiting (the cutover itself goes on). @default - SIGINT and SIGTERM stop waiting */
  readonly signal?: AbortSignal;
}

/** The exit code of a command stopped by Ctrl-C, as a shell reports it. */
const INTERRUPTED = 130;

/** 0 when the cutover succeeded, 1 when it failed, 2 when no runner is waiting there, 130 when stopped waiting. */
export async function cutoverCommand(opts: CutoverOptions, io: Io): Promise<number> {
  if (!opts.workDir) {
    throw new CliError('cutover needs --work-dir DIR: the directory `db-migration migrate --work-dir DIR` runs in', EXIT.usage);
  }
  const dir = controlDir(workDirPaths(resolve(opts.workDir)).logs);
  const stop = new AbortController();
  opts.signal?.addEventListener('abort', () => stop.abort(), { once: true });
  const onSignal = () => stop.abort();
  if (!opts.signal) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    const code = await requestCutover({ dir, out: lineWriter(io), signal: stop.signal, pollMs: opts.pollMs });
    if (stop.signal.aborted && code === EXIT.failed) {
      io.err(`⚠️ stopped waiting; the cutover was not cancelled: the runner goes on with it (its progress: ${dir}/cutover-*.log, its outcome: cutover-*.result)`);
      return INTERRUPTED;
    }
    return code;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** A stream that hands whole lines to io.out (requestCutover writes whole lines; a partial one waits for its end). */
function lineWriter(io: Io): Writable {
  let pending = '';
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const lines = (pending + chunk.toString()).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) io.out(line);
      done();
    },
    final(done) {
      if (pending) io.out(pending);
      done();
    },
  });
}
