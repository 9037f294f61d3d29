/**
 * `strata chroot IMAGE|C [CMD...]`: the quick path, without runc. The rootfs is mounted (an image
 * gets a throwaway writable layer), a private mount namespace gets /proc and the host's /dev
 * mounted into it, and the command runs chrooted there as the image's user. The namespace ends
 * with the command, taking those mounts along; the throwaway layer is removed.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { LayerStore } from '../driver/store/store.js';
import type { Images } from '../driver/store/images.js';
import { ETC_FILE_PATHS } from '../runtime/etc-files.js';
import { makeInitLayer } from '../runtime/init-layer.js';
import { signalNumber } from '../runtime/runc.js';
import { resolveUser } from '../runtime/user.js';
import { ContainerError, resolveContainer, type StoreAccess } from './containers.js';
import { planContainer, type ImageRunConfig } from './process.js';

// In the new namespace: mount /proc and /dev into the root, then chroot (changing to the working
// directory inside, with the image's own shell, when it is not /).
const SCRIPT = `r=$1; w=$2; u=$3; shift 3
/usr/bin/mount -t proc proc "$r/proc" && /usr/bin/mount --rbind /dev "$r/dev" || exit 125
if [ "$w" = / ]; then exec /usr/sbin/chroot $u "$r" "$@"; fi
exec /usr/sbin/chroot $u "$r" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$w" "$@"`;

/** glibc's list of variables it drops for setuid programs, plus the rest of the loader's. */
const LOADER_VARIABLES = /^(LD_.*|GCONV_PATH|GETCONF_DIR|HOSTALIASES|LOCALDOMAIN|LOCPATH|MALLOC_.*|NIS_PATH|NLSPATH|RESOLV_HOST_CONF|RES_OPTIONS|TMPDIR|TZDIR|GLIBC_TUNABLES)$/;

interface Target {
  layer: string;
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  /** Layers made for this call, removed after it (top first). */
  temporary: string[];
}

async function target(images: Images, store: LayerStore, ref: string, args: string[]): Promise<Target> {
  const rec = await resolveContainer(store, ref).catch(() => undefined);
  if (rec !== undefined) {
    const p = rec.process;
    return { layer: rec.layer, args: args.length > 0 ? args : p.args, env: p.env, cwd: p.cwd, user: p.user, temporary: [] };
  }
  let img;
  try {
    img = await images.resolve(ref);
  } catch {
    throw new ContainerError(`No such image or container: ${ref}`, 125);
  }
  const config = (JSON.parse(img.config) as { config?: ImageRunConfig }).config ?? {};
  const hasCommand = args.length > 0 || (config.Cmd ?? []).length > 0 || (config.Entrypoint ?? []).length > 0;
  const plan = planContainer(config, { args: hasCommand ? args : ['/bin/sh'], env: [], network: 'host', volumes: [], tty: false, interactive: false });
  const id = `chroot-${randomBytes(16).toString('hex')}`;
  const top = img.layers[img.layers.length - 1] ?? null;
  await makeInitLayer(store, `${id}-init`, top, ETC_FILE_PATHS);
  try {
    await store.createReadWrite(id, `${id}-init`);
  } catch (err) {
    await store.remove(`${id}-init`).catch(() => undefined);
    throw err;
  }
  const p = plan.process;
  return { layer: id, args: p.args, env: p.env, cwd: p.cwd, user: p.user, temporary: [id, `${id}-init`] };
}

export async function chroot(access: StoreAccess, ref: string, args: string[]): Promise<number> {
  const { t, rootfs } = await access(async (images, store) => {
    const t = await target(images, store, ref, args);
    try {
      return { t, rootfs: await store.get(t.layer) };
    } catch (err) {
      for (const l of t.temporary) await store.remove(l).catch(() => undefined);
      throw err;
    }
  });
  let status: number;
  try {
    const user = resolveUser(rootfs, t.user);
    const userspec = user.uid === 0 && user.gid === 0 ? '' : `--userspec=${user.uid}:${user.gid}`;
    const env = t.env.some((e) => e.startsWith('HOME=')) ? t.env : [...t.env, `HOME=${user.home}`];
    // The environment reaches the command through the host's unshare, sh, mount and chroot,
    // running as root: what would steer their loader or libc is not passed.
    const safe = env.filter((e) => !LOADER_VARIABLES.test(e.slice(0, e.indexOf('='))));
    const child = spawn('/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', SCRIPT, 'sh', rootfs, t.cwd, userspec, ...t.args], {
      stdio: 'inherit',
      env: Object.fromEntries(safe.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
    });
    // The command gets the terminal's signals itself; this process waits for it.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    try {
      status = await new Promise<number>((resolve, reject) => {
        child.on('error', (err) => reject(new ContainerError(`cannot run unshare: ${err.message}`, 125)));
        child.on('close', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : signalNumber(signal))));
      });
    } finally {
      process.off('SIGINT', ignore);
    }
  } finally {
    await access(async (_images, store) => {
      await store.put(t.layer);
      for (const l of t.temporary) await store.remove(l);
    });
  }
  return status;
}
