/**
 * Writes a directory whole or not at all: files go to a temporary sibling first, which then replaces the
 * target with two renames. A failure before the swap leaves the target exactly as it was.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export function replaceDirectory(target: string, files: Record<string, string>): void {
  const dir = resolve(target);
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const staging = mkdtempSync(join(parent, `.${basename(dir)}.new-`));
  chmodSync(staging, 0o777 & ~process.umask()); // mkdtemp makes it 0700; the output is an ordinary directory
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(staging, name), content);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  const old = existsSync(dir) ? `${staging.replace('.new-', '.old-')}` : undefined;
  if (old) renameSync(dir, old);
  try {
    renameSync(staging, dir);
  } catch (err) {
    if (old) renameSync(old, dir);
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  if (old) rmSync(old, { recursive: true, force: true });
}
