/**
 * The container-level half of runJobPodAsKubelet: the shell script that runs as root in the container's own
 * mount namespace (`unshare --mount`), mounts what the container sees and then execs its command without
 * privileges. Two ways:
 *
 * - On the host's root (no `images`): volumes are bound at their mountPath on the host's tree (missing
 *   mountpoints are created on the host by the caller and removed after the run), `/` is remounted read-only,
 *   and `setpriv` runs the command as the pod's user.
 * - In a stand-in image root (`images`): the image's root directory is never written to. It is the lower layer
 *   of an overlay whose upper layer is a tmpfs private to the container's namespace: the container's writable
 *   layer, as with a container runtime. Mountpoints for volumes, /etc/hosts and the termination log are created
 *   in that layer, then /proc (proc), /dev (a tmpfs with null, zero, full, random, urandom and tty bound from the
 *   host, fd/stdin/stdout/stderr links, a tmpfs /dev/shm) and the volumes are mounted, and only then are the
 *   read-only volumes and, with readOnlyRootFilesystem, the root remounted read-only. A host perl (loaded before
 *   the switch, so the image needs neither perl nor setpriv nor a C library) then chroots into the root, drops
 *   every capability from the bounding set, sets the supplementary groups, GID and UID (which clears the
 *   permitted and effective sets) and execs the command; `setpriv` before it has set no_new_privs and cleared
 *   the inheritable set. The result is what `capabilities: drop [ALL]`, `allowPrivilegeEscalation: false` and a
 *   non-root runAsUser give: CapEff, CapPrm, CapBnd, CapInh and CapAmb 0, NoNewPrivs 1. (x86-64 syscall numbers.)
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';

export interface ContainerMount {
  /** Path in the container. */
  readonly target: string;
  /** Host file or directory bound there. */
  readonly source: string;
  readonly file: boolean;
  readonly readOnly: boolean;
}

export interface ContainerPlan {
  readonly mounts: readonly ContainerMount[];
  readonly readOnlyRoot: boolean;
  readonly workingDir: string;
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
  readonly command: readonly string[];
}

export interface ImageRootPlan extends ContainerPlan {
  /** The stand-in image's root directory (never modified). */
  readonly imageRoot: string;
  /** An empty host directory for the container's overlay (a tmpfs is mounted on it inside the namespace). */
  readonly layerDir: string;
}

/** Absolute paths of the host tools the scripts run (the container's PATH need not find them). */
export const HOST = {
  sh: hostTool('sh'), unshare: hostTool('unshare'), nsenter: hostTool('nsenter'), mount: hostTool('mount'),
  mkdir: hostTool('mkdir'), ln: hostTool('ln'), setpriv: hostTool('setpriv'), perl: hostTool('perl'), sleep: hostTool('sleep'),
};

export function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Runs on the host's root; the mountpoints must exist on the host. */
export function hostRootScript(p: ContainerPlan): string {
  const lines = ['set -e'];
  for (const m of p.mounts) {
    lines.push(`${HOST.mount} --bind ${quote(m.source)} ${quote(m.target)}`);
    if (m.readOnly) lines.push(`${HOST.mount} -o remount,bind,ro ${quote(m.target)}`);
  }
  if (p.readOnlyRoot) lines.push(`${HOST.mount} -o remount,bind,ro /`);
  lines.push(
    `cd ${quote(p.workingDir)}`,
    `exec ${HOST.setpriv} --reuid=${p.uid} --regid=${p.gid} --groups=${p.groups.join(',')} --no-new-privs --inh-caps=-all --bounding-set=-all -- ${p.command.map(quote).join(' ')}`,
  );
  return lines.join('\n');
}

/** Runs in the stand-in image's root (see the header). */
export function imageRootScript(p: ImageRootPlan): string {
  if (process.arch !== 'x64') throw new Error('stand-in image roots need x86-64 (the privilege drop uses its syscall numbers)');
  if (/[,:\s\\]/.test(p.imageRoot) || /[,:\s\\]/.test(p.layerDir)) throw new Error(`overlay paths must not hold , : \\ or spaces: ${p.imageRoot} ${p.layerDir}`);
  const root = join(p.layerDir, 'root');
  const at = (target: string) => join(root, resolveInRoot(p.imageRoot, target));
  const lines = [
    'set -e',
    `${HOST.mount} -t tmpfs -o mode=0755 tmpfs ${quote(p.layerDir)}`,
    `${HOST.mkdir} ${quote(join(p.layerDir, 'upper'))} ${quote(join(p.layerDir, 'work'))} ${quote(root)}`,
    `${HOST.mount} -t overlay -o ${quote(`lowerdir=${p.imageRoot},upperdir=${join(p.layerDir, 'upper')},workdir=${join(p.layerDir, 'work')}`)} overlay ${quote(root)}`,
  ];
  type Step = { target: string; run: (at: string) => string[] };
  const steps: Step[] = [
    { target: '/proc', run: (t) => [`${HOST.mkdir} -p ${quote(t)}`, `${HOST.mount} -t proc -o nosuid,nodev,noexec proc ${quote(t)}`] },
    { target: '/dev', run: (t) => devLines(t) },
    ...p.mounts.map((m): Step => ({
      target: m.target,
      run: (t) => [
        ...(m.file ? [`${HOST.mkdir} -p ${quote(dirname(t))}`, `[ -e ${quote(t)} ] || : > ${quote(t)}`] : [`${HOST.mkdir} -p ${quote(t)}`]),
        `${HOST.mount} --bind ${quote(m.source)} ${quote(t)}`,
      ],
    })),
  ];
  // Parents before children (e.g. /dev before /dev/termination-log), as the runtime orders them.
  const depth = (path: string) => path.split('/').filter(Boolean).length;
  for (const step of [...steps].sort((a, b) => depth(a.target) - depth(b.target))) lines.push(...step.run(at(step.target)));
  for (const m of p.mounts) if (m.readOnly) lines.push(`${HOST.mount} -o remount,bind,ro ${quote(at(m.target))}`);
  if (p.readOnlyRoot) lines.push(`${HOST.mount} -o remount,bind,ro ${quote(root)}`);
  lines.push(
    `exec ${HOST.setpriv} --no-new-privs --inh-caps=-all -- ${HOST.perl} -e ${quote(DROP_AND_EXEC)} -- ${quote(root)} ${quote(p.workingDir)} `
    + `${p.uid} ${p.gid} ${p.groups.join(',')} ${p.command.map(quote).join(' ')}`,
  );
  return lines.join('\n');
}

/** A minimal /dev: the device nodes a container runtime provides, bound from the host's. */
function devLines(dev: string): string[] {
  const at = (name: string) => quote(join(dev, name));
  const lines = [`${HOST.mkdir} -p ${quote(dev)}`, `${HOST.mount} -t tmpfs -o nosuid,mode=0755,size=1m tmpfs ${quote(dev)}`];
  for (const node of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) lines.push(`: > ${at(node)}`, `${HOST.mount} --bind /dev/${node} ${at(node)}`);
  lines.push(`${HOST.ln} -s /proc/self/fd ${at('fd')}`);
  ['stdin', 'stdout', 'stderr'].forEach((name, fd) => lines.push(`${HOST.ln} -s /proc/self/fd/${fd} ${at(name)}`));
  lines.push(`${HOST.mkdir} ${at('shm')}`, `${HOST.mount} -t tmpfs -o nosuid,nodev,noexec,mode=1777 tmpfs ${at('shm')}`);
  return lines;
}

/**
 * perl -e: ARGV = root, working dir, uid, gid, comma-separated groups, command... Run as root; reads
 * cap_last_cap before chroot; prctl(PR_CAPBSET_DROP) for every capability, then setgroups, setgid, setuid (x86-64
 * syscalls 157, 116, 106, 105), then execvp of the command with the container's PATH. Exec failing exits 128
 * (the kubelet's StartError).
 */
const DROP_AND_EXEC = `
my ($root, $dir, $uid, $gid, $groups, @cmd) = @ARGV;
open(my $f, "<", "/proc/sys/kernel/cap_last_cap") or die "cap_last_cap: $!\\n";
my $last = <$f>; close($f); chomp($last);
chroot($root) or die "chroot $root: $!\\n";
chdir($dir) or die "chdir $dir: $!\\n";
for my $cap (0 .. $last) { syscall(157, 24, $cap + 0, 0, 0, 0) == 0 or die "PR_CAPBSET_DROP $cap: $!\\n"; }
my @g = map { $_ + 0 } split(/,/, $groups);
syscall(116, scalar(@g), pack("L*", @g)) == 0 or die "setgroups: $!\\n";
syscall(106, $gid + 0) == 0 or die "setgid $gid: $!\\n";
syscall(105, $uid + 0) == 0 or die "setuid $uid: $!\\n";
exec { $cmd[0] } @cmd;
print STDERR "exec \\"$cmd[0]\\": $!\\n";
exit 128;
`;

/**
 * A container path with every symbolic link met in the image resolved inside the image (as the runtime's
 * securejoin does), so that a mountpoint never lands outside the root; missing components are kept as they are.
 */
export function resolveInRoot(imageRoot: string, path: string): string {
  const todo = path.split('/').filter(Boolean);
  const done: string[] = [];
  for (let hops = 0; todo.length > 0;) {
    const part = todo.shift()!;
    if (part === '.') continue;
    if (part === '..') { done.pop(); continue; }
    let link: string | undefined;
    try { if (lstatSync(join(imageRoot, ...done, part)).isSymbolicLink()) link = readlinkSync(join(imageRoot, ...done, part)); } catch { /* missing */ }
    if (link === undefined) { done.push(part); continue; }
    if (++hops > 40) throw new Error(`${path}: too many levels of symbolic links in the image`);
    if (isAbsolute(link)) done.length = 0;
    todo.unshift(...link.split('/').filter(Boolean));
  }
  return `/${done.join('/')}`;
}

function hostTool(name: string): string {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    try { lstatSync(join(dir, name)); return join(dir, name); } catch { /* next */ }
  }
  return name; // not installed: the script fails with "not found", naming it
}
