/**
 * What every command shares: loading the spec, and turning expected failures into exit codes and sentences.
 */
import { SpecError } from '../spec/issues';
import { loadSpecFile } from '../spec/load';
import type { MigrationSpec } from '../spec/schema';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** An expected failure: printed as its message, no stack trace. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.failed) {
    super(message);
  }
}

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

export function loadSpecOrExplain(file: string): MigrationSpec {
  try {
    return loadSpecFile(file);
  } catch (err) {
    if (err instanceof SpecError) {
      const n = err.issues.length;
      throw new CliError(`${err.message}\n❌ ${file}: ${n} problem${n === 1 ? '' : 's'}; nothing was written.`, EXIT.usage);
    }
    throw err;
  }
}
