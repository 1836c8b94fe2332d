/**
 * How online mode's modules write their lines: one function for the level, the sentence and the JSON fields,
 * so the replication modules log without knowing the Logger or the database's phase.
 */
import type { LogFields } from '../report/log';

export type OnlineLog = (level: 'info' | 'ok' | 'warn' | 'error', message: string, fields?: LogFields) => void;
