/**
 * The image config a build produces, in Docker's format (what `docker inspect` and `docker save`
 * carry): the container config fields each instruction sets, the rootfs DiffIDs, and one history
 * entry per instruction, with `empty_layer` on those that add no layer.
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../driver/store/digest.js';
import { goArch, type ImageConfig } from '../driver/store/images.js';

/** The `config` object of an image config: the defaults of containers made from it. */
export interface ContainerConfig {
  Env?: string[];
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, Record<string, never>>;
  Volumes?: Record<string, Record<string, never>>;
  Healthcheck?: { Test: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; StartInterval?: number; Retries?: number };
  StopSignal?: string;
  Shell?: string[];
  OnBuild?: string[] | null;
  ArgsEscaped?: boolean;
  [key: string]: unknown;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function emptyConfig(): ImageConfig {
  return {
    architecture: goArch(),
    os: 'linux',
    created: new Date(0).toISOString(),
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

export function containerConfig(c: ImageConfig): ContainerConfig {
  return c.config as ContainerConfig;
}

/** The value of NAME in an Env list, or undefined. */
export function envGet(env: string[] | undefined, name: string): string | undefined {
  const hit = (env ?? []).find((e) => e.startsWith(name + '='));
  return hit === undefined ? undefined : hit.slice(name.length + 1);
}

/** Env with NAME set to value (replacing, keeping its place). */
export function envSet(env: string[] | undefined, name: string, value: string): string[] {
  const out = [...(env ?? [])];
  const i = out.findIndex((e) => e.startsWith(name + '='));
  if (i >= 0) out[i] = `${name}=${value}`;
  else out.push(`${name}=${value}`);
  return out;
}

/** The id an image with this config would have: what each step prints and names as its parent. */
export function stateId(config: ImageConfig): Digest {
  return `sha256:${createHash('sha256').update(JSON.stringify(config)).digest('hex')}`;
}

/**
 * The container config with every field Docker writes (zero values included), PATH set as the
 * classic builder sets it when the base image has none.
 */
export function normalized(c: ImageConfig): ImageConfig {
  const next = structuredClone(c);
  const cc = (next.config ?? {}) as ContainerConfig;
  const zero: ContainerConfig = {
    Hostname: '', Domainname: '', User: '', AttachStdin: false, AttachStdout: false, AttachStderr: false,
    Tty: false, OpenStdin: false, StdinOnce: false, Env: null as unknown as string[], Cmd: null, Image: '',
    Volumes: null as unknown as Record<string, Record<string, never>>, WorkingDir: '', Entrypoint: null, OnBuild: null,
    Labels: null as unknown as Record<string, string>,
  };
  const out: ContainerConfig = { ...zero, ...cc };
  if (envGet(out.Env ?? undefined, 'PATH') === undefined) out.Env = [...(out.Env ?? []), `PATH=${DEFAULT_PATH}`];
  next.config = out;
  return next;
}

/** A deep copy with a history entry (and, for a layer, its DiffID) appended. */
export function withStep(c: ImageConfig, createdBy: string, diffId: Digest | null, created: string): ImageConfig {
  const next = structuredClone(c);
  (next.config as ContainerConfig).Image = stateId(c);
  next.created = created;
  next.history.push({ created, created_by: createdBy, ...(diffId === null ? { empty_layer: true } : {}) });
  if (diffId !== null) next.rootfs.diff_ids.push(diffId);
  return next;
}
