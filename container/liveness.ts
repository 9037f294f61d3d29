/**
 * Whether the process recorded as a container's supervisor still runs. Its start time (field 22
 * of /proc/PID/stat, in clock ticks since boot) is recorded with the pid, so a pid reused by
 * another process is not taken for it, nor a zombie for a live one.
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
