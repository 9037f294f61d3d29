/**
 * A private dockerd 20.10 (Debian docker.io) for tests: its own data root, exec root, socket and
 * pidfile, no iptables or bridge; stopped in teardown. And docker-archive readers to compare what
 * two engines saved.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import type { Teardown } from './mounts.js';
import { run, type Result } from './run.js';

/** The 20.10 client; another may be first on PATH. */
export const DOCKER = '/usr/bin/docker';

export interface Dockerd {
  docker(...args: string[]): Result;
  /** What dockerd printed so far (for failure messages). */
  log(): string;
  /** SIGTERM, and wait for it to exit. */
  stop(): Promise<void>;
}

/** Start dockerd with dirs under `base` (and `extra` flags); resolves once `docker info` answers. */
export async function startDockerd(t: Teardown, base: string, extra: string[] = []): Promise<Dockerd> {
  const sock = join(base, 'docker.sock');
  const daemon: ChildProcess = spawn(
    'dockerd',
    ['--data-root', join(base, 'data'), '--exec-root', join(base, 'exec'), '-H', `unix://${sock}`, '--pidfile', join(base, 'docker.pid'), '--iptables=false', '--bridge=none', ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  daemon.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const stop = async () => {
    if (daemon.exitCode !== null || daemon.signalCode !== null) return;
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
  };
  // dockerd leaves mounts under its dirs after it stops: the caller's tempDir detaches them.
  t.teardown(stop);
  const docker = (...args: string[]): Result => run(DOCKER, ['-H', `unix://${sock}`, ...args], { env: { ...process.env, DOCKER_BUILDKIT: '0' } });
  for (let i = 0; i < 150 && daemon.exitCode === null && docker('info').code !== 0; i++) await new Promise((r) => setTimeout(r, 200));
  if (docker('info').code !== 0) throw new Error(`dockerd did not come up: ${log.slice(-1500)}`);
  return { docker, log: () => log, stop };
}

/** Each layer of a docker-archive as sorted "type mode uid:gid size name -> link" lines. */
export async function archiveLayers(archive: Buffer): Promise<string[][]> {
  const files = await tarFiles(archive);
  const manifest = JSON.parse(files.get('manifest.json')!.toString()) as Array<{ Layers: string[] }>;
  const out: string[][] = [];
  for (const l of manifest[0]!.Layers) {
    const entries: string[] = [];
    const x = extract();
    Readable.from([files.get(l)!]).pipe(x);
    for await (const e of x) {
      const h = e.header;
      // Docker's headers carry the type bits in the mode too (Go's FileInfoHeader); tar-stream
      // writes permission bits only. The type is compared on its own.
      entries.push(`${h.type} ${((h.mode ?? 0) & 0o7777).toString(8)} ${h.uid}:${h.gid} ${h.size} ${h.name.replace(/\/$/, '')}${h.linkname ? ' -> ' + h.linkname : ''}`);
      e.resume();
    }
    out.push(entries.sort());
  }
  return out;
}

/** The members of a tar, by name. */
export async function tarFiles(archive: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const x = extract();
  Readable.from([archive]).pipe(x);
  for await (const e of x) {
    const chunks: Buffer[] = [];
    for await (const c of e) chunks.push(c as Buffer);
    files.set(e.header.name, Buffer.concat(chunks));
  }
  return files;
}
