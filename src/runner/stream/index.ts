export { streamDatabase } from './stream-database';
export type { StreamOptions, StreamPhase, StreamProgress, StreamResult } from './types';
export { StreamAbortedError, StreamTimeoutError, StreamUnsupportedError } from './errors';
