/**
 * A running driver's counters (dentry cache, copy-ups, open files): asked for with SIGUSR1, which
 * makes the driver write them to its status file (driver/server.ts), then read from there once
 * the file changed.
 */
import { readFileSync, statSync } from 'node:fs';
import type { DriverStats } from './fs/fuse-ops.js';
import { readState, statusFile } from './runtime.js';

function mtimeOf(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * The counters of the drivers serving `mountpoints`, as JSON text by mountpoint; those with no
 * recorded driver, a driver gone, or no answer within `waitMs` are left out. The caller passes
 * only mounts still served: a dead driver's pid may belong to another process by now.
 */
export async function askDriverStats(mountpoints: string[], waitMs: number): Promise<Map<string, string>> {
  const asked = new Map<string, number>();
  for (const mp of mountpoints) {
    const state = readState(mp);
    if (state === null) continue;
    const before = mtimeOf(statusFile(mp));
    try {
      process.kill(state.pid, 'SIGUSR1');
      asked.set(mp, before);
    } catch {
      // Gone.
    }
  }
  const deadline = Date.now() + waitMs;
  const pending = () => [...asked].filter(([mp, before]) => mtimeOf(statusFile(mp)) === before);
  while (pending().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const out = new Map<string, string>();
  for (const mp of asked.keys()) {
    if (mtimeOf(statusFile(mp)) === asked.get(mp)) continue;
    try {
      out.set(mp, readFileSync(statusFile(mp), 'utf8'));
    } catch {
      // Removed meanwhile: the mount ended.
    }
  }
  return out;
}

export function parseDriverStats(text: string): DriverStats {
  return JSON.parse(text) as DriverStats;
}
