/**
 * The run-wide side of online mode: every database replicates at once (its initial copy takes one of
 * migration.parallelDatabases slots), reports its lag here, and cuts over when the coordinator says so:
 * - cutover: auto: as soon as every database that is still replicating is ready;
 * - cutover: manual: when the operator's command arrives (control.ts), each database as soon as it is ready.
 * After a failed cutover every database waits for the operator's command again. The coordinator keeps the
 * control directory's heartbeat fresh and writes each request's result once its databases are done; before the
 * runner exits (which ends the container, and the command `kubectl exec` started in it), it waits, bounded, until
 * the command has printed the outcome.
 */
import type { RuntimeConfig } from '../../spec/runtime-config';
import type { Logger } from '../report/log';
import { ACK_WAIT_SECONDS, ACK_WAIT_STOPPED_SECONDS, controlDir, CutoverControl, type RunnerState } from './control';

interface Request {
  readonly id: string;
  readonly waiting: Set<string>;
  /** Databases whose cutover failed (fence lifted, replication goes on). */
  readonly failed: string[];
  /** Databases whose migration ended while the request was open (they will not cut over). */
  readonly left: string[];
  readonly pauses: number[];
}

interface Entry {
  state: 'copying' | 'replicating' | 'cutting-over' | 'done';
  ready: boolean;
  status: string;
}

export interface CutoverTicket {
  /** The operator's request id, or "auto". */
  readonly id: string;
  report(line: string): void;
}

export class OnlineCoordinator {
  private readonly entries = new Map<string, Entry>();
  private readonly control: CutoverControl;
  private timer: NodeJS.Timeout | undefined;
  private request: Request | undefined;
  /** Operator requests whose result is written and whose command has not yet confirmed printing it. */
  private readonly unread = new Set<string>();
  private announcedReady = false;
  private manualOnly = false;
  private slots: number;
  private readonly queue: Array<() => void> = [];

  constructor(private readonly config: RuntimeConfig, databases: readonly string[], private readonly log: Logger, private readonly hint: string) {
    this.control = new CutoverControl(controlDir(config.paths.logs));
    for (const d of databases) this.entries.set(d, { state: 'copying', ready: false, status: 'waiting to copy' });
    this.slots = Math.max(1, config.migration.parallelDatabases);
  }

  async start(): Promise<void> {
    await this.control.init();
    await this.beat();
    this.timer = setInterval(() => { void this.tick(); }, 1000);
  }

  /**
   * The run is over: a request still open gets its (failed) result, the heartbeat says "finished", and the
   * commands that asked are given ACK_WAIT_SECONDS to print their outcome before the runner exits.
   */
  async stop(signal?: AbortSignal): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const open = this.request;
    this.request = undefined;
    if (open && open.id !== 'auto') {
      await this.writeResult(open.id, false, `the run ended before the cutover finished${signal?.aborted ? ' (it was stopped)' : ''}: `
        + 'the summary in the log and the termination message says how each database ended');
    }
    await this.control.heartbeat('finished').catch(() => undefined);
    // Stopped (SIGTERM): the kubelet's grace period is running, so a shorter wait.
    const seconds = signal?.aborted ? ACK_WAIT_STOPPED_SECONDS : ACK_WAIT_SECONDS;
    for (const id of this.unread) {
      if (!await this.control.acknowledged(id)) this.log.info(`waiting up to ${seconds}s for the cutover command (request ${id}) to print the outcome before exiting`);
      const read = await this.control.awaitAck(id, seconds).catch(() => false);
      if (!read) this.log.warn(`the cutover command (request ${id}) did not confirm it printed the outcome: the summary below and the termination message have it`);
    }
  }

  /** Runs an initial copy in one of parallelDatabases slots. */
  async copySlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.slots === 0) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.slots--;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next(); else this.slots++;
    }
  }

  update(database: string, patch: Partial<Entry>): void {
    Object.assign(this.entries.get(database)!, patch);
  }

  /** A database that will not cut over (failed or interrupted) no longer holds the others back. */
  leave(database: string): void {
    const cutOver = this.entries.get(database)?.state === 'done';
    this.entries.delete(database);
    if (this.request) {
      this.request.waiting.delete(database);
      if (!cutOver && !this.request.failed.includes(database)) this.request.left.push(database);
    }
    this.settleRequest();
  }

  /**
   * Whether `database` (replicating and ready) should cut over now; then it belongs to the returned ticket.
   * Polled by each database's catch-up loop.
   */
  ticketFor(database: string): CutoverTicket | undefined {
    const e = this.entries.get(database);
    if (!e || e.state !== 'replicating' || !e.ready) return undefined;
    const auto = this.config.migration.online.cutover === 'auto' && !this.manualOnly;
    if (!this.request && auto && this.allReady()) this.request = newRequest('auto');
    if (!this.request || this.request.failed.includes(database)) return undefined;
    const id = this.request.id;
    this.request.waiting.add(database);
    e.state = 'cutting-over';
    return { id, report: (line) => { if (id !== 'auto') void this.control.log(id, `[${database}] ${line}`).catch(() => undefined); } };
  }

  /** The database's cutover ended; `pauseSeconds` when it succeeded. */
  finished(database: string, ticket: CutoverTicket, ok: boolean, pauseSeconds?: number): void {
    const e = this.entries.get(database);
    if (e) e.state = ok ? 'done' : 'replicating';
    if (!this.request || this.request.id !== ticket.id) return;
    this.request.waiting.delete(database);
    if (ok && pauseSeconds !== undefined) this.request.pauses.push(pauseSeconds);
    if (!ok) {
      this.request.failed.push(database);
      this.manualOnly = true; // after a failed cutover the operator decides when to try again
    }
    this.settleRequest();
  }

  private settleRequest(): void {
    const r = this.request;
    if (!r || r.waiting.size > 0) return;
    // Open until every database not yet cut over has taken part (one still copying or catching up joins later).
    if ([...this.entries.entries()].some(([d, e]) => e.state !== 'done' && !r.failed.includes(d))) return;
    this.request = undefined;
    if (r.id === 'auto') return;
    const ok = r.failed.length === 0 && r.left.length === 0;
    const problems = [
      ...(r.failed.length ? [`failed for ${r.failed.join(', ')}: the fence is lifted and replication goes on; fix what the log names and run the cutover again`] : []),
      ...(r.left.length ? [`${r.left.join(', ')} stopped before cutting over: the log says why`] : []),
    ];
    const message = ok ? `every database is cut over; longest write pause ${Math.max(0, ...r.pauses).toFixed(1)}s` : problems.join('; ');
    void this.writeResult(r.id, ok, message);
  }

  private async writeResult(id: string, ok: boolean, message: string): Promise<void> {
    this.unread.add(id);
    await this.control.finish(id, ok, message).catch(() => undefined);
  }

  private allReady(): boolean {
    const waiting = [...this.entries.values()].filter((e) => e.state !== 'done');
    return waiting.length > 0 && waiting.every((e) => e.state === 'replicating' && e.ready);
  }

  private async tick(): Promise<void> {
    try {
      if (!this.request) {
        const id = await this.control.takeRequest();
        if (id) {
          this.request = newRequest(id);
          // A new command: the commands of earlier requests have printed their outcome or are gone.
          this.unread.clear();
          this.log.info(`cutover ${id} requested by the operator`);
          await this.control.log(id, `cutover ${id} accepted: every database cuts over as soon as it is ready`);
        }
      }
      if (!this.announcedReady && this.allReady()) {
        this.announcedReady = true;
        if (this.config.migration.online.cutover === 'manual') this.log.ok(`ready to cut over: every database has caught up. ${this.hint}`);
        else this.log.ok('ready to cut over: every database has caught up; cutting over now (cutover: auto)');
      }
      if (!this.allReady()) this.announcedReady = false;
      await this.beat();
    } catch {
      // The control directory is best effort; the log says the same.
    }
  }

  private async beat(): Promise<void> {
    const states = [...this.entries.values()];
    const state: RunnerState = states.some((e) => e.state === 'cutting-over') ? 'cutting-over'
      : states.length > 0 && this.allReady() ? 'ready' : states.some((e) => e.state === 'copying') ? 'copying' : 'replicating';
    await this.control.heartbeat(state, [...this.entries.entries()].map(([d, e]) => `${d}: ${e.status}`).join('\n'));
  }
}

function newRequest(id: string): Request {
  return { id, waiting: new Set(), failed: [], left: [], pauses: [] };
}
