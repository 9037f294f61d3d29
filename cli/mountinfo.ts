/** Reading /proc/self/mountinfo: which paths are mount points, and of which filesystem type. */
import { readFileSync } from 'node:fs';

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function mounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 0 || fields.length < sep + 3) continue;
    out.push({ mountpoint: unescape(fields[4]!), fstype: fields[sep + 1]!, source: unescape(fields[sep + 2]!) });
  }
  return out;
}

/** The mount at exactly `path` (the last one, if several are stacked there). */
export function mountAt(path: string): MountEntry | undefined {
  return mounts()
    .filter((m) => m.mountpoint === path)
    .pop();
}

export const STRATA_FSTYPE = 'fuse.strata';
