export { streamDatabase } from './stream-database';
export type { StreamOptions, StreamPhase, StreamProgress, StreamResult } from './stream-types';
export { StreamAbortedError, StreamTimeoutError, StreamUnsupportedError } from './stream-errors';
