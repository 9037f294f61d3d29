/**
 * USER as Docker resolves it: `user[:group]`, names looked up in the image's /etc/passwd and
 * /etc/group (read inside the rootfs, symlinks resolved in it), numbers taken as they are. The
 * user's supplementary groups are the groups that list it.
 */
import { MountedRoot, type Root } from '../builder/fs/root.js';

export class UserError extends Error {}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

function readTable(root: Root, file: string): string[][] {
  return (root.readText(file) ?? '')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

const NUMBER = /^\d+$/;

/** `spec` looked up in the tree `rootfs` (a mounted rootfs path, or any Root). */
export function resolveUser(rootfs: string | Root, spec: string): ResolvedUser {
  const root = typeof rootfs === 'string' ? new MountedRoot(rootfs) : rootfs;
  const [user = '', group] = spec === '' ? ['root'] : spec.split(':', 2);
  const passwd = readTable(root, '/etc/passwd');
  const entry = passwd.find((p) => (NUMBER.test(user) ? p[2] === user : p[0] === user));
  let uid: number;
  let gid: number;
  let home = '/';
  if (entry !== undefined) {
    uid = parseInt(entry[2] ?? '0', 10);
    gid = parseInt(entry[3] ?? '0', 10);
    home = entry[5] || '/';
  } else if (NUMBER.test(user)) {
    uid = parseInt(user, 10);
    gid = 0;
  } else {
    throw new UserError(`unable to find user ${user}: no matching entries in passwd file`);
  }
  const groups = readTable(root, '/etc/group');
  if (group !== undefined && group !== '') {
    if (NUMBER.test(group)) gid = parseInt(group, 10);
    else {
      const g = groups.find((x) => x[0] === group);
      if (g === undefined) throw new UserError(`unable to find group ${group}: no matching entries in group file`);
      gid = parseInt(g[2] ?? '0', 10);
    }
  }
  const name = entry?.[0];
  const additionalGids =
    group !== undefined || name === undefined
      ? []
      : groups.filter((g) => (g[3] ?? '').split(',').includes(name)).map((g) => parseInt(g[2] ?? '0', 10)).filter((g) => g !== gid);
  return { uid, gid, additionalGids, home };
}
