/**
 * Where db-migration itself is: a checkout (src/ beside package.json) or the installed package
 * (node_modules/db-migration, compiled lib/ and the prebuilt runner, no src/). Found at run time from this file's
 * directory (src/chart under tsx, lib/src/chart once compiled), so both layouts read the same package.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The package's name in package.json. */
export const PACKAGE_NAME = 'db-migration';

interface PackageJson {
  readonly name?: string;
  readonly version?: string;
}

let found: { root: string; pkg: PackageJson } | undefined;

/** The directory holding db-migration's package.json: the nearest above this file. */
export function packageRoot(): string {
  return locate().root;
}

/** db-migration's version (package.json), for the app.kubernetes.io/version label. */
export function packageVersion(): string {
  const { root, pkg } = locate();
  if (typeof pkg.version !== 'string') throw new Error(`db-migration: ${join(root, 'package.json')} has no version`);
  return pkg.version;
}

/** The checkout's root when the runner's source is here (src/runner/), else undefined (an installed package). */
export function checkoutRoot(): string | undefined {
  const root = packageRoot();
  return existsSync(join(root, 'src', 'runner')) ? root : undefined;
}

function locate(): { root: string; pkg: PackageJson } {
  if (found) return found;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    const pkg = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as PackageJson) : undefined;
    if (pkg?.name === PACKAGE_NAME) return (found = { root: dir, pkg });
    if (dirname(dir) === dir) throw new Error(`db-migration: no package.json named ${PACKAGE_NAME} above ${__dirname}`);
  }
}
