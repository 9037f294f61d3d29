/**
 * Whether a process still runs, from /proc/PID/stat. A killed process stays a zombie until its
 * parent reaps it; a detached one's parent is whatever inherited it, which may take a second or
 * more, so kill(pid, 0) would call it alive. The start time (field 22, clock ticks since boot),
 * recorded with a pid, also tells a pid reused by another process from the one recorded.
 */
import { readFileSync } from 'node:fs';

export function processStart(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie (killed, not yet reaped by whoever inherited it) runs no more.
    if (fields[0] === 'Z' || fields[0] === 'X') return null;
    return Number(fields[19]);
  } catch {
    return null;
  }
}

export function processAlive(pid: number, start: number): boolean {
  return processStart(pid) === start;
}

/** The process runs (neither gone nor a zombie). */
export function processRunning(pid: number): boolean {
  return processStart(pid) !== null;
}
