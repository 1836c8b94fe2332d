/**
 * Running totals of a stream run, and the throttled progress callback built on them: at most one report
 * per interval while bytes flow, and one at every phase change and finished table.
 */
import type { StreamPhase, StreamProgress } from './stream-types';

export class ProgressTracker {
  phase: StreamPhase = 'pre-data';
  tablesDone = 0;
  tablesTotal = 0;
  bytesCopied = 0;
  /** The copy's expected bytes (StreamProgress.bytesExpected), set once the catalog is read. */
  bytesExpected = 0;
  rowsCopied = 0;
  private lastReport = 0;

  constructor(
    private readonly onProgress: ((p: StreamProgress) => void) | undefined,
    private readonly intervalMs = 1000,
  ) {}

  enter(phase: StreamPhase): void {
    this.phase = phase;
    this.report();
  }

  addBytes(n: number): void {
    this.bytesCopied += n;
    if (Date.now() - this.lastReport >= this.intervalMs) this.report();
  }

  tableDone(rows: number): void {
    this.tablesDone++;
    this.rowsCopied += rows;
    this.report();
  }

  snapshot(): StreamProgress {
    const { phase, tablesDone, tablesTotal, bytesCopied, bytesExpected, rowsCopied } = this;
    return { phase, tablesDone, tablesTotal, bytesCopied, bytesExpected, rowsCopied };
  }

  private report(): void {
    this.lastReport = Date.now();
    try {
      this.onProgress?.(this.snapshot());
    } catch {
      // A broken progress consumer must not break the copy.
    }
  }
}
