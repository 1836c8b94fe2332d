/**
 * A queue drained by a fixed number of workers, in order (the caller sorts it: largest first). The first
 * failure stops the rest: the shared signal is aborted, the workers finish or fail fast, and that first
 * error, not an abort error it caused, is what the caller gets.
 */

export interface WorkQueueOptions<W> {
  /** One per worker; each worker handles its items one after the other. */
  readonly workers: readonly W[];
  /** Aborted on the first failure, and by the caller to stop everything. */
  readonly controller: AbortController;
}

export async function drainQueue<T, W>(
  items: readonly T[], opts: WorkQueueOptions<W>, handle: (item: T, worker: W, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  let next = 0;
  let firstError: unknown;
  const { controller } = opts;
  const run = async (worker: W) => {
    while (!controller.signal.aborted && next < items.length) {
      const item = items[next++];
      try {
        await handle(item, worker, controller.signal);
      } catch (err) {
        if (firstError === undefined && !controller.signal.aborted) {
          firstError = err;
          controller.abort(err);
        }
        return;
      }
    }
  };
  await Promise.all(opts.workers.map(run));
  if (firstError !== undefined) throw firstError;
  controller.signal.throwIfAborted();
}
