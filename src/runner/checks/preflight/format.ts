/** Pre-flight problems as lines for people: what is missing, where, and the SQL that fixes it. */
import type { PreflightProblem, PreflightReport } from './preflight-types';

/**
 * "❌ <database>: <server> <user@host:port/db>: <what is missing>" (⚠️ for warnings), then "   fix: <SQL>",
 * one line per statement.
 */
export function formatPreflightProblem(p: PreflightProblem): string[] {
  const mark = p.severity === 'error' ? '❌' : '⚠️';
  const lines = [`${mark} ${p.database}: ${p.server} ${p.endpoint}: ${p.message}`];
  if (p.fix) {
    p.fix.split('\n').forEach((stmt, i) => lines.push(`${i === 0 ? '   fix: ' : '        '}${stmt}`));
  }
  return lines;
}

/** The whole report: problems first, then one line per database with what was found. */
export function formatPreflightReport(report: PreflightReport): string[] {
  const lines = report.problems.flatMap(formatPreflightProblem);
  for (const d of report.databases) {
    const facts = [
      d.sourceVersionText ? `source PostgreSQL ${d.sourceVersionText}` : undefined,
      d.destinationVersionText ? `destination PostgreSQL ${d.destinationVersionText}` : undefined,
      d.sourceSizeBytes !== undefined ? `${d.sourceSizeBytes} bytes` : undefined,
      d.tables !== undefined ? `${d.tables} tables` : undefined,
      d.willCreateDestination ? 'destination will be created' : undefined,
    ].filter(Boolean);
    lines.push(`${d.ok ? '✅' : '❌'} ${d.database}: ${d.ok ? 'ready' : 'not ready'}${facts.length ? ` (${facts.join(', ')})` : ''}`);
  }
  return lines;
}
