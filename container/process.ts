/**
 * What a container runs, as `docker run` decides it: the image's Entrypoint, Cmd, Env,
 * WorkingDir and User, each overridden by its flag. `--entrypoint` also drops the image's Cmd;
 * arguments after the image replace Cmd; `-e K` without a value takes the caller's value.
 */
import { posix } from 'node:path';
import type { ContainerProcess } from '../driver/store/metadata.js';
import { DEFAULT_PATH } from '../builder/image-config.js';

export class ContainerConfigError extends Error {}

/** The image config's fields a container uses (the `config` object of an image config). */
export interface ImageRunConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
}

export interface RunFlags {
  /** Arguments after the image name. */
  args: string[];
  /** --entrypoint: one executable ('' clears the image's). */
  entrypoint?: string | undefined;
  env: string[];
  workdir?: string | undefined;
  user?: string | undefined;
  network: 'none' | 'host';
  volumes: string[];
  tty: boolean;
  interactive: boolean;
}

export interface ContainerPlan {
  process: ContainerProcess;
  cmd: string[] | null;
  entrypoint: string[] | null;
  stopSignal: string;
}

export function planContainer(image: ImageRunConfig, flags: RunFlags, hostEnv: NodeJS.ProcessEnv = process.env): ContainerPlan {
  let entrypoint = image.Entrypoint ?? null;
  let cmd = image.Cmd ?? null;
  if (flags.entrypoint !== undefined) {
    entrypoint = flags.entrypoint === '' ? null : [flags.entrypoint];
    cmd = null;
  }
  if (flags.args.length > 0) cmd = flags.args;
  const args = [...(entrypoint ?? []), ...(cmd ?? [])];
  if (args.length === 0) throw new ContainerConfigError('no command specified (the image has no Cmd or Entrypoint; give one after the image name)');

  let env = [...(image.Env ?? [])];
  for (const e of flags.env) {
    const eq = e.indexOf('=');
    const name = eq < 0 ? e : e.slice(0, eq);
    if (name === '') throw new ContainerConfigError(`invalid environment variable: ${e}`);
    const value = eq < 0 ? hostEnv[name] : e.slice(eq + 1);
    env = env.filter((x) => x.split('=', 1)[0] !== name);
    if (value !== undefined) env.push(`${name}=${value}`);
  }
  if (!env.some((x) => x.startsWith('PATH='))) env.unshift(`PATH=${DEFAULT_PATH}`);

  const cwd = flags.workdir ?? (image.WorkingDir || '/');
  if (!posix.isAbsolute(cwd)) throw new ContainerConfigError(`the working directory '${cwd}' is invalid, it needs to be an absolute path`);

  return {
    process: {
      args,
      env,
      cwd: posix.normalize(cwd),
      user: flags.user ?? image.User ?? '',
      tty: flags.tty,
      openStdin: flags.interactive,
      network: flags.network,
      binds: flags.volumes.map(parseVolume),
    },
    cmd,
    entrypoint,
    stopSignal: image.StopSignal ?? 'SIGTERM',
  };
}

/** `-v HOST:CONTAINER[:ro|rw]`: both absolute, the host path existing (checked at create). */
export function parseVolume(spec: string): { source: string; destination: string; readonly: boolean } {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) throw new ContainerConfigError(`invalid volume specification: '${spec}' (use HOST:CONTAINER[:ro])`);
  const [source = '', destination = '', mode = 'rw'] = parts;
  if (!posix.isAbsolute(source)) throw new ContainerConfigError(`invalid volume specification: '${spec}': the host path must be absolute (named volumes are not supported)`);
  if (!posix.isAbsolute(destination)) throw new ContainerConfigError(`invalid volume specification: '${spec}': the container path must be absolute`);
  if (posix.normalize(destination) === '/') throw new ContainerConfigError(`invalid volume specification: '${spec}': the container path cannot be /`);
  if (mode !== 'ro' && mode !== 'rw') throw new ContainerConfigError(`invalid volume specification: '${spec}': unknown mode ${mode} (ro or rw)`);
  return { source: posix.normalize(source), destination: posix.normalize(destination), readonly: mode === 'ro' };
}
