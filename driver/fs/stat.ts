/**
 * The stat buffer shared by the syscall helper and the patched fuse-native: a Uint32Array of 22
 * words, filled by lstat/fstat and handed to FUSE unchanged. Only the fields the union logic reads
 * or rewrites have accessors here.
 */
export const STAT_WORDS = 22;

export const S = {
  mode: 0,
  uid: 1,
  gid: 2,
  sizeLo: 3,
  sizeHi: 4,
  dev: 5,
  nlink: 6,
  inoLo: 7,
  inoHi: 8,
  rdev: 9,
  blksize: 10,
  blocksLo: 11,
  blocksHi: 12,
  atimeLo: 13,
  atimeHi: 14,
  atimeNs: 15,
  mtimeLo: 16,
  mtimeHi: 17,
  mtimeNs: 18,
  ctimeLo: 19,
  ctimeHi: 20,
  ctimeNs: 21,
} as const;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;
export const S_ISGID = 0o2000;
export const S_ISUID = 0o4000;

const TWO32 = 4294967296;

export function newStat(): Uint32Array {
  return new Uint32Array(STAT_WORDS);
}

export function fileType(st: Uint32Array): number {
  return st[S.mode]! & S_IFMT;
}

export function statSize(st: Uint32Array): number {
  return st[S.sizeLo]! + st[S.sizeHi]! * TWO32;
}

export function statIno(st: Uint32Array): number {
  return st[S.inoLo]! + st[S.inoHi]! * TWO32;
}

export function setStatIno(st: Uint32Array, ino: number): void {
  st[S.inoLo] = ino % TWO32;
  st[S.inoHi] = Math.floor(ino / TWO32);
}

/** Seconds as a signed 64-bit value split in two words. */
function seconds(lo: number, hi: number): number {
  return hi >= 0x80000000 ? (hi - TWO32) * TWO32 + lo : hi * TWO32 + lo;
}

export interface Timespec {
  sec: number;
  nsec: number;
}

export function statAtime(st: Uint32Array): Timespec {
  return { sec: seconds(st[S.atimeLo]!, st[S.atimeHi]!), nsec: st[S.atimeNs]! };
}

export function statMtime(st: Uint32Array): Timespec {
  return { sec: seconds(st[S.mtimeLo]!, st[S.mtimeHi]!), nsec: st[S.mtimeNs]! };
}
