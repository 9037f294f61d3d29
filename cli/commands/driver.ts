/**
 * `strata driver serve|install|uninstall`: strata as dockerd's storage driver, a GraphDriver
 * plugin on a unix socket (driver/plugin/), and the spec file through which dockerd finds it.
 */
import { renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { keepDriverReady } from '../../driver/launch.js';
import { GraphDriver } from '../../driver/plugin/graph-driver.js';
import { servePlugin } from '../../driver/plugin/server.js';
import { LayerStore } from '../../driver/store/store.js';
import { UserError } from '../errors.js';
import { openFailure } from './images.js';

/** Its own store: the server holds the store's database for as long as it runs. */
export const DEFAULT_DOCKER_ROOT = '/var/lib/strata-docker';
/** Where dockerd 20.10 looks for plugin spec files (besides /usr/lib/docker/plugins). */
const SPEC_DIR = '/etc/docker/plugins';

export async function serveDriver(a: { root: string | undefined; socket: string; debug: boolean }): Promise<void> {
  const root = resolve(a.root ?? DEFAULT_DOCKER_ROOT);
  const socket = resolve(a.socket);
  let store: LayerStore;
  try {
    store = await LayerStore.open(root, { onWait: () => process.stderr.write(`strata: waiting for another strata command using ${root}\n`) });
  } catch (err) {
    throw new UserError(openFailure(root, err));
  }
  const log = (line: string) => {
    if (a.debug || line.includes(' failed after ')) process.stderr.write(`strata driver: ${line}\n`);
  };
  let server;
  try {
    server = await servePlugin(new GraphDriver(store), socket, log);
  } catch (err) {
    await store.close();
    throw new UserError(`cannot serve on ${socket}: ${(err as Error).message}`);
  }
  // A container start is two Gets (its init layer, then its own) in quick succession: with two
  // drivers started ahead, neither waits for a process start.
  keepDriverReady(2);
  process.stderr.write(`strata driver: serving GraphDriver on ${socket}, layers in ${root}\n`);
  await new Promise<void>((done) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      // The mounts stay: their drivers are processes of their own, and dockerd still holds them.
      void server.close().then(() => store.close()).then(done);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

function specPath(name: string): string {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new UserError(`${JSON.stringify(name)} is not a plugin name (lower-case letters, digits, . _ -)`);
  return join(SPEC_DIR, `${name}.spec`);
}

/** Write the spec file dockerd reads for `--storage-driver NAME`: the socket's address. */
export function installDriver(a: { name: string; socket: string }): void {
  const path = specPath(a.name);
  mkdirSync(SPEC_DIR, { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `unix://${resolve(a.socket)}\n`, { mode: 0o644 });
  renameSync(tmp, path);
  process.stdout.write(`${path}\n`);
}

export function uninstallDriver(a: { name: string }): void {
  rmSync(specPath(a.name), { force: true });
}
