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
    // No message: the exit code says it all (141, the reader of standard output went away).
    if (err.message !== '') process.stderr.write(`strata: ${err.message}\n`);
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

/** Options of run and create that take a value: the image is the first word not one of them. */
const RUN_VALUE_OPTIONS = new Set(['--root', '--name', '--env', '--workdir', '--user', '--network', '--volume', '--entrypoint', '-e', '-w', '-u', '-v']);

/**
 * Docker's rule for run, create and chroot: everything after the image belongs to the container's
 * command (`strata run IMG sh -c 'exit 3'`). yargs sees the arguments up to the image; the rest
 * is handed to the command as it is.
 */
function splitContainerCommand(argv: string[]): { argv: string[]; command: string[] } {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += argv[i] === '--root' ? 2 : 1;
  const verb = argv[i];
  if (verb !== 'run' && verb !== 'create' && verb !== 'chroot') return { argv, command: [] };
  for (let j = i + 1; j < argv.length; j++) {
    const t = argv[j]!;
    if (t === '--') return { argv: [...argv.slice(0, j), ...argv.slice(j + 1, j + 2)], command: argv.slice(j + 2) };
    if (!t.startsWith('-') || t === '-') return { argv: argv.slice(0, j + 1), command: argv.slice(j + 1) };
    if (t.includes('=')) continue;
    // -e K=V, --name N; a group of short flags (-it, -dv /a:/b) ends in the one that may take a value.
    const takesValue = RUN_VALUE_OPTIONS.has(t.startsWith('--') ? t : `-${t.at(-1)}`);
    if (takesValue) j++;
  }
  return { argv, command: [] };
}

function runOptions<T>(y: import('yargs').Argv<T>) {
  return y
    .positional('image', { type: 'string', demandOption: true, describe: 'the image; everything after it is the command' })
    .option('name', { type: 'string', describe: 'a name for the container' })
    .option('rm', { type: 'boolean', default: false, describe: 'remove the container when it exits' })
    .option('interactive', { alias: 'i', type: 'boolean', default: false, describe: "keep the container's stdin open" })
    .option('tty', { alias: 't', type: 'boolean', default: false, describe: 'a pseudo-terminal for the container' })
    .option('env', { alias: 'e', type: 'string', describe: 'set K=V (repeatable; K alone takes this shell\'s value)' })
    .option('workdir', { alias: 'w', type: 'string', describe: 'working directory inside the container' })
    .option('user', { alias: 'u', type: 'string', describe: 'USER[:GROUP], a name or a number' })
    .option('network', { type: 'string', default: 'none', choices: ['none', 'host'], describe: "none, or the host's network" })
    .option('volume', { alias: 'v', type: 'string', describe: 'bind HOST:CONTAINER[:ro] (repeatable)' })
    .option('entrypoint', { type: 'string', describe: "override the image's entrypoint" });
}

interface RunOptionValues {
  root?: string | undefined;
  image: string;
  name?: string | undefined;
  rm: boolean;
  interactive: boolean;
  tty: boolean;
  env?: string | string[] | undefined;
  workdir?: string | undefined;
  user?: string | undefined;
  network: string;
  volume?: string | string[] | undefined;
  entrypoint?: string | undefined;
}

function runArgs(a: RunOptionValues, command: string[], detach: boolean) {
  return {
    root: a.root,
    image: a.image,
    name: a.name,
    rm: a.rm,
    detach,
    args: command,
    entrypoint: a.entrypoint,
    env: ([] as string[]).concat(a.env ?? []),
    workdir: a.workdir,
    user: a.user,
    network: a.network as 'none' | 'host',
    volumes: ([] as string[]).concat(a.volume ?? []),
    tty: a.tty,
    interactive: a.interactive,
  };
}

async function main(): Promise<void> {
  const split = splitContainerCommand(hideBin(process.argv));
  const argv = split.argv;
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
          const c = await import('./commands/containers.js');
          if (a.mountpoint === undefined && (await c.findContainer(a.root, a.source)) !== undefined) {
            await c.mountContainer({ root: a.root, container: a.source });
            return;
          }
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
        const { existsSync } = await import('node:fs');
        if (!a.mountpoint.includes('/') && !existsSync(a.mountpoint)) {
          const c = await import('./commands/containers.js');
          if ((await c.findContainer(a.root, a.mountpoint)) !== undefined) {
            await c.umountContainer({ root: a.root, container: a.mountpoint });
            return;
          }
        }
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
          .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'even if a mount or a container uses it' }),
      async (a) => {
        const { rmi } = await import('./commands/images.js');
        await rmi({ root: a.root, images: a.images, force: a.force });
      },
    )
    .command(
      'export <image>',
      'write the merged tree of an image or a container as one tar',
      (y) => y.positional('image', { type: 'string', demandOption: true }).option('output', { alias: 'o', type: 'string', describe: 'file (default: standard output)' }),
      async (a) => {
        const c = await import('./commands/containers.js');
        const { exportImage, writeArchive } = await import('./commands/images.js');
        if ((await c.findContainer(a.root, a.image)) !== undefined) {
          await c.exportContainer({ root: a.root, container: a.image }, (tar) => writeArchive(tar as import('node:stream').Readable, a.output));
          return;
        }
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
      'diff <target>',
      "a container's changes, or an image mount's (--rw): A added, C changed, D deleted (as docker diff)",
      (y) => y.positional('target', { type: 'string', demandOption: true, describe: 'a container, or the mountpoint of strata mount IMAGE --rw' }),
      async (a) => {
        const c = await import('./commands/containers.js');
        const { existsSync } = await import('node:fs');
        if (!a.target.includes('/') && !existsSync(a.target) && (await c.findContainer(a.root, a.target)) !== undefined) {
          await c.diffContainer({ root: a.root, container: a.target });
          return;
        }
        const { diffMount } = await import('./commands/images.js');
        await diffMount({ root: a.root, mountpoint: a.target });
      },
    )
    .command(
      'run <image>',
      'run a command in a new container (flags after the image belong to the command)',
      (y) => runOptions(y).option('detach', { alias: 'd', type: 'boolean', default: false, describe: 'run in the background and print its id' }),
      async (a) => {
        const { run } = await import('./commands/containers.js');
        await run(runArgs(a, split.command, a.detach));
      },
    )
    .command(
      'create <image>',
      'create a container without starting it; prints its id',
      (y) => runOptions(y),
      async (a) => {
        const { create } = await import('./commands/containers.js');
        await create(runArgs(a, split.command, false));
      },
    )
    .command(
      'start <containers..>',
      'start stopped containers (in the background, unless -a)',
      (y) =>
        y
          .positional('containers', { type: 'string', array: true, demandOption: true })
          .option('attach', { alias: 'a', type: 'boolean', default: false, describe: "attach to the output and exit with the container's status" })
          .option('interactive', { alias: 'i', type: 'boolean', default: false, describe: "attach this shell's stdin" }),
      async (a) => {
        const { start } = await import('./commands/containers.js');
        await start({ root: a.root, containers: a.containers, attach: a.attach, interactive: a.interactive });
      },
    )
    .command(
      'stop <containers..>',
      "stop running containers: the image's stop signal, then SIGKILL after the timeout",
      (y) => y.positional('containers', { type: 'string', array: true, demandOption: true }).option('time', { alias: 't', type: 'number', default: 10, describe: 'seconds to wait before killing' }),
      async (a) => {
        const { stop } = await import('./commands/containers.js');
        await stop({ root: a.root, containers: a.containers, time: a.time });
      },
    )
    .command(
      'kill <containers..>',
      'send a signal to running containers',
      (y) => y.positional('containers', { type: 'string', array: true, demandOption: true }).option('signal', { alias: 's', type: 'string', default: 'KILL' }),
      async (a) => {
        const { kill } = await import('./commands/containers.js');
        await kill({ root: a.root, containers: a.containers, signal: a.signal });
      },
    )
    .command(
      'rm <containers..>',
      'remove containers and their writable layers',
      (y) => y.positional('containers', { type: 'string', array: true, demandOption: true }).option('force', { alias: 'f', type: 'boolean', default: false, describe: 'kill a running container first' }),
      async (a) => {
        const { rm } = await import('./commands/containers.js');
        await rm({ root: a.root, containers: a.containers, force: a.force });
      },
    )
    .command(
      'ps',
      'list containers (running ones, or all with -a)',
      (y) => y.option('all', { alias: 'a', type: 'boolean', default: false }).option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'only ids' }),
      async (a) => {
        const { ps } = await import('./commands/containers.js');
        await ps({ root: a.root, all: a.all, quiet: a.quiet });
      },
    )
    .command(
      'logs <container>',
      "a container's output, stdout and stderr each to its own",
      (y) => y.positional('container', { type: 'string', demandOption: true }),
      async (a) => {
        const { logs } = await import('./commands/containers.js');
        await logs({ root: a.root, container: a.container });
      },
    )
    .command(
      'commit <container> [image]',
      "make an image of a container's changes",
      (y) =>
        y
          .positional('container', { type: 'string', demandOption: true })
          .positional('image', { type: 'string', describe: 'NAME[:TAG]' })
          .option('message', { alias: 'm', type: 'string' })
          .option('author', { alias: 'a', type: 'string' }),
      async (a) => {
        const { commit } = await import('./commands/containers.js');
        await commit({ root: a.root, container: a.container, image: a.image, message: a.message, author: a.author });
      },
    )
    .command(
      'chroot <target>',
      'run a command chrooted in an image or a container, with /proc and /dev (no runc)',
      (y) => y.positional('target', { type: 'string', demandOption: true, describe: 'an image or a container; everything after it is the command' }),
      async (a) => {
        const { chroot } = await import('./commands/containers.js');
        await chroot({ root: a.root, target: a.target, args: split.command });
      },
    )
    .command(
      'container-supervise <id>',
      false,
      (y) => y.positional('id', { type: 'string', demandOption: true }),
      async (a) => {
        const { supervise } = await import('./commands/containers.js');
        await supervise({ root: a.root, id: a.id });
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
    .command(
      'pull <reference> [name]',
      'pull an image from a registry (REGISTRY/REPO[:TAG|@sha256:...]), optionally naming it NAME[:TAG]',
      (y) =>
        y
          .positional('reference', { type: 'string', demandOption: true })
          .positional('name', { type: 'string', describe: 'the local name (default: the reference)' })
          .option('insecure', { type: 'boolean', default: false, describe: 'plain HTTP (always allowed for a loopback registry)' })
          .option('platform', { type: 'string', describe: 'OS/ARCH[/VARIANT] to pick from a multi-platform image (default linux/amd64)' }),
      async (a) => {
        const { pullImage } = await import('./commands/registry.js');
        await pullImage({ root: a.root, reference: a.reference, name: a.name, insecure: a.insecure, platform: a.platform });
      },
    )
    .command(
      'push <image> [destination]',
      'push an image to a registry, as REGISTRY/REPO[:TAG] (default: the image name itself)',
      (y) =>
        y
          .positional('image', { type: 'string', demandOption: true })
          .positional('destination', { type: 'string' })
          .option('insecure', { type: 'boolean', default: false, describe: 'plain HTTP (always allowed for a loopback registry)' })
          .option('compress', { type: 'string', default: 'gzip', choices: ['gzip', 'none'], describe: 'how layers are sent' }),
      async (a) => {
        const { pushImage } = await import('./commands/registry.js');
        await pushImage({ root: a.root, image: a.image, destination: a.destination, insecure: a.insecure, compress: a.compress });
      },
    )
    .command(
      'login <registry>',
      'check and save credentials for a registry (in a file only root reads)',
      (y) =>
        y
          .positional('registry', { type: 'string', demandOption: true })
          .option('username', { alias: 'u', type: 'string', describe: 'the user name' })
          .option('password-stdin', { type: 'boolean', default: false, describe: 'read the password from stdin' })
          .option('insecure', { type: 'boolean', default: false, describe: 'plain HTTP (always allowed for a loopback registry)' }),
      async (a) => {
        const { login } = await import('./commands/registry.js');
        await login({ registry: a.registry, username: a.username, passwordStdin: a.passwordStdin, insecure: a.insecure });
      },
    )
    .command(
      'logout <registry>',
      'forget the credentials saved for a registry',
      (y) => y.positional('registry', { type: 'string', demandOption: true }),
      async (a) => {
        const { logout } = await import('./commands/registry.js');
        logout({ registry: a.registry });
      },
    )
    .command('driver', "dockerd's storage driver: a GraphDriver plugin (dockerd 20.10, --experimental)", (y) =>
      y
        .command(
          'serve',
          'serve the GraphDriver plugin protocol on a unix socket (until SIGTERM)',
          (z) =>
            z
              .option('socket', { type: 'string', default: '/run/docker/plugins/strata.sock', describe: 'the unix socket to listen on' })
              .option('debug', { type: 'boolean', default: false, describe: 'log every call to stderr' }),
          async (a) => {
            const { serveDriver } = await import('./commands/driver.js');
            await serveDriver({ root: a.root, socket: a.socket, debug: a.debug });
          },
        )
        .command(
          'install',
          'write /etc/docker/plugins/NAME.spec, so that dockerd --storage-driver NAME finds the socket',
          (z) =>
            z
              .option('name', { type: 'string', default: 'strata', describe: 'the storage driver name dockerd is given' })
              .option('socket', { type: 'string', default: '/run/docker/plugins/strata.sock', describe: 'the socket `driver serve` listens on' }),
          async (a) => {
            const { installDriver } = await import('./commands/driver.js');
            installDriver({ name: a.name, socket: a.socket });
          },
        )
        .command(
          'uninstall',
          'remove /etc/docker/plugins/NAME.spec',
          (z) => z.option('name', { type: 'string', default: 'strata', describe: 'the storage driver name' }),
          async (a) => {
            const { uninstallDriver } = await import('./commands/driver.js');
            uninstallDriver({ name: a.name });
          },
        )
        .demandCommand(1, 'give a driver command: serve, install or uninstall'),
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
// A reader that went away (`strata ps | head`): end as a process killed by SIGPIPE would, quietly;
// unless an attached container's log listens too (it stops echoing, the container goes on and
// its exit is recorded).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // Another listener (a pipeline writing an archive, an attached container's log) hears the
  // error itself and decides.
  if (process.stdout.listenerCount('error') > 1) return;
  if (err.code === 'EPIPE') process.exit(128 + 13);
  // Output redirected to a full or read-only disk (`strata save IMG > file`): said in one line,
  // not thrown from this event as a crash.
  process.stderr.write(`strata: cannot write to standard output: ${err.message}\n`);
  process.exit(1);
});
process.stderr.on('error', () => undefined);
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
