#!/usr/bin/env node
/**
 * The strata command line. It only parses arguments, lazily imports the command module and calls
 * it; behaviour lives in the commands and the driver. Errors become messages and exit codes here.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { basename } from 'node:path';
import { UserError } from './errors.js';

function fail(err: unknown): never {
  if (err instanceof UserError) {
    process.stderr.write(`strata: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`strata: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(70);
}

/**
 * Invoked as mount(8)'s helper (/sbin/mount.fuse.strata SOURCE MOUNTPOINT [-o OPTS] [-n] [-s]
 * [-f] [-v]): the same as `strata mount -o OPTS MOUNTPOINT`.
 */
function mountHelperArgs(argv: string[]): string[] | null {
  if (!/^mount\.(fuse\.)?strata$/.test(basename(process.argv[1] ?? ''))) return null;
  const out = ['mount'];
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') out.push('-o', argv[++i] ?? '');
    else if (a.startsWith('-o')) out.push('-o', a.slice(2));
    else if (['-n', '-s', '-f', '-v', '-r', '-w'].includes(a)) continue; // no mtab, sloppy, fake, verbose
    else positional.push(a);
  }
  out.push(positional[positional.length - 1] ?? '');
  return out;
}

async function main(): Promise<void> {
  const argv = hideBin(process.argv);
  await yargs(mountHelperArgs(argv) ?? argv)
    .scriptName('strata')
    .usage('$0 <command> [options]')
    .command(
      'mount [source] <mountpoint>',
      'mount stacked layer directories as one union filesystem',
      (y) =>
        y
          .positional('source', { type: 'string', describe: 'ignored (mount(8) passes "overlay" or "strata")' })
          .positional('mountpoint', { type: 'string', demandOption: true })
          .option('lower', { type: 'string', describe: 'lower layers, top first: L1:L2:L3' })
          .option('upper', { type: 'string', describe: 'writable upper layer' })
          .option('work', { type: 'string', describe: 'work directory on the same filesystem as the upper' })
          .option('o', { type: 'string', requiresArg: true, describe: 'mount options: lowerdir=,upperdir=,workdir=,ro,nosuid,...' })
          .option('foreground', { alias: 'f', type: 'boolean', default: false, describe: 'serve in this process, log to stderr' })
          .option('debug', { alias: 'd', type: 'boolean', default: false, describe: 'log every op as op(args) -> result' })
          .example('$0 mount --lower L1:L2 --upper U --work W /mnt', '')
          .example('$0 mount -o lowerdir=L1:L2,upperdir=U,workdir=W /mnt', ''),
      async (a) => {
        const { mount } = await import('./commands/mount.js');
        await mount({
          mountpoint: a.mountpoint,
          lower: a.lower,
          upper: a.upper,
          work: a.work,
          // Repeated -o options arrive as an array.
          options: a.o === undefined ? [] : ([] as string[]).concat(a.o),
          foreground: a.foreground,
          debug: a.debug,
        });
      },
    )
    .command(
      ['umount <mountpoint>', 'unmount <mountpoint>'],
      'unmount a strata mount and stop its driver',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .option('lazy', { alias: 'l', type: 'boolean', default: false, describe: 'detach now, finish when no longer busy' }),
      async (a) => {
        const { umount } = await import('./commands/umount.js');
        await umount({ mountpoint: a.mountpoint, lazy: a.lazy });
      },
    )
    .command(
      'status <mountpoint>',
      "print a mount's counters: dentry cache hits and misses, copy-ups",
      (y) => y.positional('mountpoint', { type: 'string', demandOption: true }),
      async (a) => {
        const { status } = await import('./commands/status.js');
        await status({ mountpoint: a.mountpoint });
      },
    )
    .demandCommand(1, 'give a command; see strata --help')
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      throw new UserError(msg);
    })
    .help()
    .parseAsync();
}

main().catch(fail);
