/**
 * The `db-migration` command: synth, validate, images, migrate, cutover.
 */
import { parseArgs } from 'node:util';
import { CliError, EXIT, processIo, type Io } from './context';

const USAGE = `db-migration: move PostgreSQL databases between servers with a Kubernetes Job

Usage:
  db-migration synth    [--spec migration.yaml] [--out dist]   validate, then write the manifests to dist/ (whole or not at all)
  db-migration validate [--spec migration.yaml]                check the spec and print what would be generated
  db-migration images   [--spec migration.yaml]                print every image reference (for mirroring)
  db-migration migrate  [--spec migration.yaml] --secrets secrets.yaml [--work-dir DIR]
                        [--dry-run] [--resume] [--cleanup] [--verbose] [--log-format text|json] [--bin-dir DIR]
                                                               run the migration from this machine (--cleanup: remove
                                                               the replication objects online attempts left, and exit)
  db-migration cutover  --work-dir DIR                         cut the online migration that migrate runs in DIR over
                                                               and follow it (Ctrl-C stops waiting, not the cutover);
                                                               exit 0 done, 1 failed, 2 no runner waiting there
                        in the cluster: kubectl -n NAMESPACE exec job/NAME -- sh /opt/db-migration/cutover.sh

Exit codes: 0 success, 1 migration failed, 2 invalid spec or arguments.
`;

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      io.out(USAGE);
      return command === undefined ? EXIT.usage : EXIT.ok;
    }
    const { values } = parseCommandArgs(rest);
    if (values.help) {
      io.out(USAGE);
      return EXIT.ok;
    }
    const spec = values.spec ?? 'migration.yaml';
    switch (command) {
      case 'synth': {
        const { synthCommand } = await commands.synth();
        return synthCommand({ spec, out: values.out }, io);
      }
      case 'validate': {
        const { validateCommand } = await commands.validate();
        return validateCommand({ spec }, io);
      }
      case 'images': {
        const { imagesCommand } = await commands.images();
        return imagesCommand({ spec }, io);
      }
      case 'migrate': {
        const { migrateCommand } = await commands.migrate();
        return await migrateCommand({
          spec,
          secrets: values.secrets,
          workDir: values['work-dir'],
          dryRun: values['dry-run'],
          verbose: values.verbose,
          logFormat: values['log-format'],
          binDir: values['bin-dir'],
          resume: values.resume,
          cleanup: values.cleanup,
        }, io);
      }
      case 'cutover': {
        const { cutoverCommand } = await commands.cutover();
        return await cutoverCommand({ workDir: values['work-dir'] }, io);
      }
      default:
        throw new CliError(`unknown command "${command}" (commands: synth, validate, images, migrate, cutover; see --help)`, EXIT.usage);
    }
  } catch (err) {
    if (err instanceof CliError) {
      io.err(err.message.startsWith('❌') || err.message.includes('\n') ? err.message : `❌ ${err.message}`);
      return err.exitCode;
    }
    io.err(`❌ unexpected error: ${(err as Error).stack ?? String(err)}`);
    return EXIT.failed;
  }
}

/**
 * Each command's module, loaded only when that command runs: only synth needs cdk8s (a third of a second to load),
 * only migrate esbuild.
 */
const commands = {
  synth: () => (requireLoadsSiblings() ? require('./synth') as typeof import('./synth') : import('./synth')),
  validate: () => (requireLoadsSiblings() ? require('./validate') as typeof import('./validate') : import('./validate')),
  images: () => (requireLoadsSiblings() ? require('./images') as typeof import('./images') : import('./images')),
  migrate: () => (requireLoadsSiblings() ? require('./migrate') as typeof import('./migrate') : import('./migrate')),
  cutover: () => (requireLoadsSiblings() ? require('./cutover') as typeof import('./cutover') : import('./cutover')),
};

/**
 * Whether require() loads this directory's modules: yes under the bin, whose tsx/cjs hook serves require() only (an
 * import() there cannot resolve './migrate', see 9c6adb9), and in the compiled lib/; no under vitest, whose module
 * runner resolves import() of .ts files while require is node's own. Either way a module loads once, in the loader
 * that loaded this file, so `instanceof CliError` holds.
 */
function requireLoadsSiblings(): boolean {
  try {
    require.resolve('./context');
    return true;
  } catch {
    return false;
  }
}

function parseCommandArgs(args: string[]) {
  try {
    return parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        spec: { type: 'string' },
        out: { type: 'string' },
        secrets: { type: 'string' },
        'work-dir': { type: 'string' },
        'dry-run': { type: 'boolean' },
        verbose: { type: 'boolean' },
        'log-format': { type: 'string' },
        'bin-dir': { type: 'string' },
        resume: { type: 'boolean' },
        cleanup: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new CliError(`${(err as Error).message} (see --help)`, EXIT.usage);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
