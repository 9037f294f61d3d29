/** Running commands in tests: the strata CLI (the built one, as users run it) and shell lines. */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// The bundled CLI, as `make link` puts it on PATH.
export const CLI = ROOT + 'dist/bundle/strata.cjs';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * tap puts its process-tracking hook into NODE_OPTIONS of every child it sees spawned, and each
 * Node below (the CLI, the drivers it starts, a node a shell line runs) would load it: ~0.25 s a
 * start. The tests collect no coverage, so children start as a user's would: without it.
 */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): Result {
  const r = spawnSync('/usr/bin/env', ['-u', 'NODE_OPTIONS', cmd, ...args], { encoding: 'utf8', timeout: 120_000, ...opts });
  if (r.error) throw r.error;
  return { code: r.status ?? 128 + 9, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

export function sh(line: string, opts: SpawnSyncOptions = {}): Result {
  return run('bash', ['-c', line], opts);
}

/** Run a shell line and fail loudly if it does not exit 0. */
export function must(line: string, opts: SpawnSyncOptions = {}): string {
  const r = sh(line, opts);
  if (r.code !== 0) throw new Error(`command failed (${r.code}): ${line}\n${r.stderr}`);
  return r.stdout;
}

/** The CLI through its own first line, as a user's shell runs it. */
export function strata(args: string[], opts: SpawnSyncOptions = {}): Result {
  return run(CLI, args, opts);
}
