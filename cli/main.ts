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
    .option('root', { type: 'string', global: true, describe: 'store root (default $STRATA_ROOT or /var/lib/strata)' })
    .command(
      'mount [source] [mountpoint]',
      'mount stacked layer directories, or an image, as one union filesystem',
      (y) =>
        y
          .positional('source', { type: 'string', describe: 'an IMAGE; with --lower or -o lowerdir=, ignored (mount(8) passes "overlay")' })
          .positional('mountpoint', { type: 'string' })
          .option('lower', { type: 'string', describe: 'lower layers, top first: L1:L2:L3' })
          .option('upper', { type: 'string', describe: 'writable upper layer' })
          .option('work', { type: 'string', describe: 'work directory on the same filesystem as the upper' })
          .option('o', { type: 'string', requiresArg: true, describe: 'mount options: lowerdir=,upperdir=,workdir=,ro,nosuid,...' })
          .option('rw', { type: 'boolean', default: false, describe: 'IMAGE mounts: add a writable layer, dropped at umount' })
          .option('foreground', { alias: 'f', type: 'boolean', default: false, describe: 'serve in this process, log to stderr' })
          .option('debug', { alias: 'd', type: 'boolean', default: false, describe: 'log every op as op(args) -> result' })
          .example('$0 mount --lower L1:L2 --upper U --work W /mnt', '')
          .example('$0 mount -o lowerdir=L1:L2,upperdir=U,workdir=W /mnt', '')
          .example('$0 mount busybox:latest /mnt --rw', ''),
      async (a) => {
        // Repeated -o options arrive as an array.
        const options = a.o === undefined ? [] : ([] as string[]).concat(a.o);
        const layered = a.lower !== undefined || options.some((o) => /(^|,)lowerdir=/.test(o));
        if (!layered) {
          // One argument that is a path (image names never start with / or .) or an existing
          // directory is a mountpoint given without layers.
          const { statSync } = await import('node:fs');
          const isPath = (p: string) => p.startsWith('/') || p.startsWith('.') || statSync(p, { throwIfNoEntry: false })?.isDirectory() === true;
          if (a.source === undefined || (a.mountpoint === undefined && isPath(a.source))) {
            throw new UserError('no lower layers: give --lower L1:L2 or -o lowerdir=L1:L2, or mount an image: strata mount IMAGE [MNT]');
          }
          if (a.foreground) throw new UserError('--foreground is for layer mounts; image mounts run in the background');
          const { mountImage } = await import('./commands/mount.js');
          await mountImage({ root: a.root, image: a.source, mountpoint: a.mountpoint, rw: a.rw, options, debug: a.debug });
          return;
        }
        const mountpoint = a.mountpoint ?? a.source;
        if (mountpoint === undefined) throw new UserError('give a mountpoint');
        const { mount } = await import('./commands/mount.js');
        await mount({
          mountpoint,
          lower: a.lower,
          upper: a.upper,
          work: a.work,
          options,
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
    .command(
      'import <file> [ref]',
      'make a one-layer image from a rootfs tarball (plain, gzip, bzip2, xz, zstd; - for stdin)',
      (y) =>
        y
          .positional('file', { type: 'string', demandOption: true })
          .positional('ref', { type: 'string', describe: 'NAME[:TAG]' })
          .option('message', { alias: 'm', type: 'string', describe: 'comment recorded in the history' }),
      async (a) => {
        const { importImage } = await import('./commands/images.js');
        await importImage({ root: a.root, file: a.file, ref: a.ref, message: a.message });
      },
    )
    .command(
      'images',
      'list images',
      (y) => y.option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'only image ids' }),
      async (a) => {
        const { listImages } = await import('./commands/images.js');
        await listImages({ root: a.root, quiet: a.quiet });
      },
    )
    .command('layers', 'list layers', (y) => y, async (a) => {
      const { listLayers } = await import('./commands/images.js');
      await listLayers({ root: a.root });
    })
    .command(
      'history <image>',
      "show an image's history",
      (y) => y.positional('image', { type: 'string', demandOption: true }),
      async (a) => {
        const { history } = await import('./commands/images.js');
        await history({ root: a.root, image: a.image });
      },
    )
    .command(
      'inspect <target>',
      'print an image or a layer as JSON',
      (y) => y.positional('target', { type: 'string', demandOption: true }),
      async (a) => {
        const { inspect } = await import('./commands/images.js');
        await inspect({ root: a.root, target: a.target });
      },
    )
    .command(
      'tag <source> <target>',
      'give an image another NAME[:TAG]',
      (y) => y.positional('source', { type: 'string', demandOption: true }).positional('target', { type: 'string', demandOption: true }),
      async (a) => {
        const { tag } = await import('./commands/images.js');
        await tag({ root: a.root, source: a.source, target: a.target });
      },
    )
    .command(
      'rmi <images..>',
      'remove image tags, and images left without one',
      (y) =>
        y
          .positional('images', { type: 'string', array: true, demandOption: true })
          .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'even if a mount uses it' }),
      async (a) => {
        const { rmi } = await import('./commands/images.js');
        await rmi({ root: a.root, images: a.images, force: a.force });
      },
    )
    .command(
      'export <image>',
      'write the merged tree of an image as one tar',
      (y) => y.positional('image', { type: 'string', demandOption: true }).option('output', { alias: 'o', type: 'string', describe: 'file (default: standard output)' }),
      async (a) => {
        const { exportImage } = await import('./commands/images.js');
        await exportImage({ root: a.root, image: a.image, output: a.output });
      },
    )
    .command(
      'save <images..>',
      'write images to an archive: docker-archive (docker load, skopeo) or an OCI layout tar',
      (y) =>
        y
          .positional('images', { type: 'string', array: true, demandOption: true })
          .option('output', { alias: 'o', type: 'string', describe: 'file (default: standard output)' })
          .option('format', { type: 'string', default: 'docker', choices: ['docker', 'oci'] }),
      async (a) => {
        const { saveImages } = await import('./commands/images.js');
        await saveImages({ root: a.root, images: a.images, output: a.output, format: a.format });
      },
    )
    .command(
      'load',
      'load images from a docker-archive or an OCI layout (tar, compressed tar or directory)',
      (y) => y.option('input', { alias: 'i', type: 'string', describe: 'archive or layout dir (default: standard input)' }),
      async (a) => {
        const { loadImages } = await import('./commands/images.js');
        await loadImages({ root: a.root, input: a.input });
      },
    )
    .command(
      'build <context>',
      'build an image from a Dockerfile: one layer per filesystem-changing instruction, with a build cache',
      (y) =>
        y
          .positional('context', { type: 'string', demandOption: true, describe: 'the build context directory' })
          .option('tag', { alias: 't', type: 'string', describe: 'NAME[:TAG] (repeatable)' })
          .option('file', { alias: 'f', type: 'string', describe: 'the Dockerfile (default: CONTEXT/Dockerfile)' })
          .option('build-arg', { type: 'string', describe: 'K=V (repeatable)' })
          .option('target', { type: 'string', describe: 'build up to this stage' })
          .option('cache', { type: 'boolean', default: true, describe: 'use the build cache; --no-cache runs every step' })
          .option('network', { type: 'string', default: 'none', choices: ['none', 'host', 'default'], describe: 'network of RUN steps' })
          .option('progress', { type: 'string', default: 'auto', choices: ['auto', 'plain'], describe: 'output style (both print every step)' }),
      async (a) => {
        const { build } = await import('./commands/build.js');
        await build({
          root: a.root,
          context: a.context,
          file: a.file,
          // Repeated options arrive as arrays (array: true would swallow the context argument).
          tags: ([] as string[]).concat(a.tag ?? []),
          buildArgs: ([] as string[]).concat(a['build-arg'] ?? []),
          target: a.target,
          // yargs reads --no-cache as the negation of --cache.
          noCache: !a.cache,
          network: a.network,
        });
      },
    )
    .command(
      'diff <mountpoint>',
      "the changes in an image mount's writable layer: A added, C changed, D deleted (as docker diff)",
      (y) => y.positional('mountpoint', { type: 'string', demandOption: true }),
      async (a) => {
        const { diffMount } = await import('./commands/images.js');
        await diffMount({ root: a.root, mountpoint: a.mountpoint });
      },
    )
    .command('prune', 'free layers no image, layer or mount uses', (y) => y, async (a) => {
      const { prune } = await import('./commands/images.js');
      await prune({ root: a.root });
    })
    .command(
      'check',
      'verify digests, refcounts and on-disk state of the store',
      (y) => y.option('quick', { type: 'boolean', default: false, describe: 'skip re-reading layer contents' }),
      async (a) => {
        const { check } = await import('./commands/images.js');
        await check({ root: a.root, quick: a.quick });
      },
    )
    .demandCommand(1, 'give a command; see strata --help')
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      throw new UserError(msg);
    })
    .help()
    // Help is laid out for every command run (yargs caches it); wrapping it costs ~25 ms of a
    // cached build, so only a terminal gets it wrapped, to its width.
    .wrap(process.stdout.isTTY ? Math.min(100, process.stdout.columns) : null)
    // --help and --version end the command normally instead of exiting from inside yargs.
    .exitProcess(false)
    .parseAsync();
}

// A command whose promise never settles (the event loop ran dry while it awaited something that
// holds no handle) must not pass for a success: scripts trust exit codes. 'beforeExit' comes only
// from such a drain, never from an explicit process.exit (a foreground mount ends that way).
let settled = false;
process.on('beforeExit', () => {
  if (!settled && (process.exitCode ?? 0) === 0) {
    process.stderr.write('strata: internal error: the command stopped before finishing\n');
    process.exitCode = 70;
  }
});
main().then(
  () => (settled = true),
  (err: unknown) => {
    settled = true;
    fail(err);
  },
);
