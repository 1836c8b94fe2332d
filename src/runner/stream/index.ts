/**
 * Folder stream/: the engine of stream mode (and of online mode's initial copy): the schema from pg_dump, the
 * rows as parallel COPY streams in one exported snapshot, then the indexes and constraints. This file is its
 * public face; everything else in the folder is internal to it. Imports postgres/, checks/, dump-restore/ (the
 * shared work queue); imported by phases/, online/ and the plan.
 */
export { streamDatabase } from './stream-database';
export type { StreamOptions, StreamPhase, StreamProgress, StreamResult } from './stream-types';
export { StreamAbortedError, StreamTimeoutError, StreamUnsupportedError } from './stream-errors';
