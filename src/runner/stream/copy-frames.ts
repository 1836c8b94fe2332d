/**
 * COPY data relayed between two servers as protocol frames. A CopyData message has the same shape in both
 * directions ('d', int32 length, payload), so the frames a source sends for `COPY ... TO STDOUT` can be written
 * unchanged to a destination in `COPY ... FROM STDIN`: nothing is decoded or copied per row. (pg-copy-streams
 * unwraps every row's payload and wraps it again, which cost this relay about a third of a core at 5 million
 * rows; its protocol handling is the model for these two classes.)
 *
 * Both classes are node-postgres "submittables" (`client.query(new CopyOutFrames(sql))`): while the COPY runs
 * they own the connection's socket, with back-pressure both ways (the source socket is read only while the
 * destination accepts more; a full destination socket pauses the pipeline), and they hand the socket back to
 * node-postgres for what follows (CommandComplete, errors, ReadyForQuery). Only whole frames are passed on, so a
 * COPY in progress can always be ended cleanly with CopyDone or CopyFail; memory is a few socket reads, plus
 * one row when a row is larger than a read.
 */
import { Readable, Writable } from 'node:stream';

const COPY_DATA = 0x64; // d
const COPY_DONE = 0x63; // c
const COPY_OUT_RESPONSE = 0x48; // H
// May arrive between CopyData messages; not part of the data (see the protocol's "COPY Operations").
const SKIPPED_DURING_COPY = new Set([COPY_OUT_RESPONSE, 0x4e /* N notice */, 0x53 /* S parameter status */, 0x41 /* A notification */]);
const HEADER = 5;

/** The parts of node-postgres' Connection these classes use (its socket and its COPY messages). */
interface PgConnection {
  readonly stream: import('node:net').Socket;
  query(text: string): void;
  sendCopyFail(message: string): void;
}

function commandRowCount(msg: { text?: string } | undefined): number | undefined {
  const m = /^COPY (\d+)/.exec(msg?.text ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Settles with the COPY's row count once the server is ready for the next query, or with the COPY's error. */
class Completion {
  rowCount = 0;
  error: Error | undefined;
  readonly promise: Promise<number>;
  private settle!: (err: Error | undefined) => void;

  constructor() {
    this.promise = new Promise<number>((resolve, reject) => {
      this.settle = (err) => (err ? reject(err) : resolve(this.rowCount));
    });
    this.promise.catch(() => undefined); // the stream's 'error' event reports it too
  }

  done(): void {
    this.settle(this.error);
  }
}

/**
 * `COPY ... TO STDOUT` as a stream of whole CopyData frames (header included). `done` settles with the
 * server's row count (exact in the session's snapshot) after ReadyForQuery; `payloadBytes` counts the data
 * inside the frames.
 */
export class CopyOutFrames extends Readable {
  payloadBytes = 0;
  private readonly completion = new Completion();
  private connection: PgConnection | undefined;
  private pgDataHandler: ((chunk: Buffer) => void) | undefined;
  private readonly onReadableEvent = () => this.forward();
  private wanted = false;
  private forwarding = false;
  private finished = false;
  /** The start of a frame not yet complete, waiting for `tailNeed` bytes in all. */
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private tailNeed = 0;

  constructor(readonly text: string, private readonly onBytes?: (payloadBytes: number) => void) {
    super();
  }

  /** Settles with the row count after the server has finished the COPY; rejects with its error. */
  get done(): Promise<number> {
    return this.completion.promise;
  }

  get rowCount(): number {
    return this.completion.rowCount;
  }

  submit(pgConnection: unknown): void {
    const connection = pgConnection as PgConnection;
    this.connection = connection;
    const socket = connection.stream;
    const listeners = socket.listeners('data') as Array<(chunk: Buffer) => void>;
    if (listeners.length !== 1) throw new Error(`CopyOutFrames: expected one data listener on the connection, found ${listeners.length}`);
    this.pgDataHandler = listeners[0];
    socket.removeListener('data', this.pgDataHandler);
    socket.pause();
    socket.on('readable', this.onReadableEvent);
    connection.query(this.text);
  }

  /** node-postgres installs its query_timeout here when one is configured. */
  callback(): void {}

  override _read(): void {
    this.wanted = true;
    this.forward();
  }

  private forward(): void {
    if (this.forwarding || !this.wanted || !this.connection || this.finished) return;
    this.forwarding = true;
    const socket = this.connection.stream;
    let chunk: Buffer | null;
    while (this.wanted && !this.finished && (chunk = socket.read()) !== null) {
      this.wanted = this.parse(chunk);
    }
    this.forwarding = false;
  }

  /** Pushes the whole data frames in `chunk`; returns whether more is wanted now. */
  private parse(chunk: Buffer): boolean {
    let wanted = true;
    let payload = 0;
    let i = 0;
    if (this.tailBytes > 0) {
      // Complete the frame begun in an earlier read with the front of this one (only that much is copied).
      i = this.extendTail(chunk);
      if (i < 0) return true;
      const frame = Buffer.concat(this.tail, this.tailBytes);
      this.tail = [];
      this.tailBytes = 0;
      if (frame[0] === COPY_DATA) {
        payload += frame.length - HEADER;
        wanted = this.push(frame);
      }
    }
    const n = chunk.length;
    let spanStart = i; // whole data frames from spanStart to i are pushed together, without copying
    const flush = (end: number) => {
      if (end > spanStart) wanted = this.push(chunk.subarray(spanStart, end)) && wanted;
    };
    while (i < n) {
      const code = chunk[i];
      if (code !== COPY_DATA && !SKIPPED_DURING_COPY.has(code)) {
        // CopyDone, an ErrorResponse, or anything else ends copy-out mode: node-postgres takes it from here
        // (and buffers a message that is not complete yet).
        flush(i);
        this.finish(code === COPY_DONE ? undefined : 'error', chunk.subarray(i));
        break;
      }
      const end = n - i >= HEADER ? i + 1 + chunk.readUInt32BE(i + 1) : Infinity;
      if (end > n) {
        flush(i);
        this.tail = [chunk.subarray(i)];
        this.tailBytes = n - i;
        this.tailNeed = end === Infinity ? HEADER : end - i;
        break;
      }
      if (code === COPY_DATA) {
        payload += end - i - HEADER;
      } else {
        flush(i);
        spanStart = end;
      }
      i = end;
    }
    if (i >= n) flush(n);
    if (payload > 0) {
      this.payloadBytes += payload;
      this.onBytes?.(payload);
    }
    return wanted;
  }

  /**
   * Appends to the pending frame what it still needs from the front of `chunk`; returns the offset just after
   * the completed frame, or -1 when `chunk` ended first.
   */
  private extendTail(chunk: Buffer): number {
    let off = 0;
    for (;;) {
      const take = Math.min(this.tailNeed - this.tailBytes, chunk.length - off);
      if (take > 0) {
        this.tail.push(chunk.subarray(off, off + take));
        this.tailBytes += take;
        off += take;
      }
      if (this.tailBytes < this.tailNeed) return -1;
      if (this.tailNeed > HEADER || this.tailBytes > HEADER) return off;
      // The header is complete now: the frame's length says how much more it needs.
      const header = Buffer.concat(this.tail, this.tailBytes);
      this.tail = [header];
      this.tailNeed = 1 + header.readUInt32BE(1);
      if (this.tailNeed <= HEADER) return off; // a message with no body (length 4)
    }
  }

  /** Gives the socket back to node-postgres with the bytes it has not seen; ends the stream unless an error follows. */
  private finish(kind: 'error' | undefined, rest: Buffer): void {
    this.finished = true;
    const socket = this.connection!.stream;
    socket.removeListener('readable', this.onReadableEvent);
    socket.on('data', this.pgDataHandler!);
    // node-postgres parses CommandComplete / ErrorResponse and ReadyForQuery (and buffers a partial message).
    this.pgDataHandler!(rest);
    // Resume on the next tick: the handler above may pause the socket itself.
    process.nextTick(() => socket.resume());
    if (kind === undefined) this.push(null);
  }

  handleCommandComplete(msg: { text?: string }): void {
    this.completion.rowCount = commandRowCount(msg) ?? 0;
  }

  /** node-postgres calls this instead of handleReadyForQuery when the server reports an error. */
  handleError(err: Error): void {
    this.callback();
    this.connection = undefined;
    this.completion.error = err;
    this.completion.done();
    this.destroy(err);
  }

  handleReadyForQuery(): void {
    this.callback();
    this.connection = undefined;
    this.completion.done();
  }
}

/**
 * `COPY ... FROM STDIN` written with whole CopyData frames (as CopyOutFrames produces them). The stream
 * finishes only after the server has stored the rows and is ready for the next query; `rowCount` is the
 * server's count. Destroying it with an error sends CopyFail (the server rolls the COPY back).
 */
export class CopyInFrames extends Writable {
  rowCount = 0;
  private connection: PgConnection | undefined;
  private copyIn = false;
  private pending: Buffer[] = [];
  private afterCopyIn: (() => void) | undefined;
  private afterReady: ((err?: Error) => void) | undefined;
  private afterFail: ((err?: Error | null) => void) | undefined;

  constructor(readonly text: string) {
    super();
    this.cork();
  }

  submit(pgConnection: unknown): void {
    this.connection = pgConnection as PgConnection;
    this.connection.query(this.text);
  }

  /** node-postgres installs its query_timeout here when one is configured. */
  callback(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pending.push(chunk);
    this.whenCopyIn(() => this.flush(cb));
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    for (const c of chunks) this.pending.push(c.chunk);
    this.whenCopyIn(() => this.flush(cb));
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.afterReady = cb;
    this.whenCopyIn(() => this.flush(() => this.connection?.stream.write(Buffer.from([COPY_DONE, 0, 0, 0, 4]))));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Already finished, or never started: nothing to tell the server.
    if (this.afterReady || !this.connection) {
      cb(err);
      return;
    }
    this.afterFail = cb;
    this.pending = [];
    const message = err?.message ?? 'COPY stopped by db-migration';
    this.whenCopyIn(() => this.connection?.sendCopyFail(message));
  }

  private whenCopyIn(fn: () => void): void {
    if (this.copyIn) fn();
    else this.afterCopyIn = fn;
  }

  private flush(cb: () => void): void {
    const socket = this.connection?.stream;
    if (!socket) {
      cb();
      return;
    }
    let ok = true;
    let chunk: Buffer | undefined;
    while (ok && (chunk = this.pending.shift())) ok = socket.write(chunk);
    if (ok) cb();
    else socket.once('drain', () => this.flush(cb));
  }

  handleCopyInResponse(): void {
    this.copyIn = true;
    if (!this.destroyed) this.uncork();
    const fn = this.afterCopyIn;
    this.afterCopyIn = undefined;
    fn?.();
  }

  handleCommandComplete(msg: { text?: string }): void {
    this.rowCount = commandRowCount(msg) ?? 0;
  }

  /** node-postgres calls this instead of handleReadyForQuery when the server reports an error. */
  handleError(err: Error): void {
    this.callback();
    this.connection = undefined;
    if (this.afterFail) {
      const cb = this.afterFail;
      this.afterFail = undefined;
      cb(err);
    } else {
      this.destroy(err);
    }
  }

  handleReadyForQuery(): void {
    this.callback();
    this.connection = undefined;
    const cb = this.afterReady;
    this.afterReady = undefined;
    cb?.();
  }
}
