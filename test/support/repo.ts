import { join } from 'node:path';

/** The repository root. */
export const REPO = join(__dirname, '..', '..');
