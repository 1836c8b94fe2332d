/**
 * Why a stream run stopped when no server or tool error explains it. Server errors (node-postgres, with a
 * SQLSTATE) and tool errors (ToolError from postgres/exec.ts) pass through unchanged, so `classifyError` still reads them.
 */

/** The caller's signal fired: the run was interrupted (SIGTERM/SIGINT of the runner). */
export class StreamAbortedError extends Error {
  constructor(readonly database: string) {
    super(`stream of database ${database} was stopped: the run was interrupted`);
    this.name = 'StreamAbortedError';
  }
}

/** A phase ran longer than its limit (migration.timeouts) and was stopped. */
export class StreamTimeoutError extends Error {
  constructor(readonly database: string, readonly phase: string, readonly timeoutSeconds: number) {
    super(`stream of database ${database}: ${phase} timed out after ${timeoutSeconds}s (raise migration.timeouts)`);
    this.name = 'StreamTimeoutError';
  }
}

/** The spec asks for something stream mode cannot do; says what and what to change. */
export class StreamUnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StreamUnsupportedError';
  }
}
