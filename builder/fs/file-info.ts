/**
 * What the builder reads of a source file's inode: type, mode, owner, size, times and identity,
 * from one lstat into a reused buffer (the sys addon's lstatAt). fs.lstatSync builds a Stats
 * object with four Dates for each call, which is most of the cost of walking a 5k-file context
 * on every build, cached ones included.
 */
import { errnoName } from '../../driver/fs/errno.js';
import { sys } from '../../driver/native/sys.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const ENOENT = 2;
const TWO_32 = 2 ** 32;

const buf = new Uint32Array(22);

export class FileInfo {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly dev: number;
  readonly ino: number;
  private readonly mtimeSec: number;
  private readonly mtimeNsec: number;
  private readonly ctimeSec: number;
  private readonly ctimeNsec: number;

  /** From lstatAt's layout (native-deps/sys/index.d.ts). */
  private constructor(s: Uint32Array) {
    this.mode = s[0]!;
    this.uid = s[1]!;
    this.gid = s[2]!;
    this.size = s[4]! * TWO_32 + s[3]!;
    this.dev = s[5]!;
    this.ino = s[8]! * TWO_32 + s[7]!;
    // Seconds are a signed 64-bit value: the high word carries the sign.
    this.mtimeSec = (s[17]! | 0) * TWO_32 + s[16]!;
    this.mtimeNsec = s[18]!;
    this.ctimeSec = (s[20]! | 0) * TWO_32 + s[19]!;
    this.ctimeNsec = s[21]!;
  }

  /** lstat(path); undefined when nothing is there, an fs-style error (code, path) otherwise. */
  static lstat(path: string): FileInfo | undefined {
    const r = sys.lstatAt(sys.AT_FDCWD, path, buf);
    if (r === -ENOENT) return undefined;
    if (r < 0) {
      const code = errnoName(r);
      throw Object.assign(new Error(`${code}: lstat ${path}`), { code, errno: r, syscall: 'lstat', path });
    }
    return new FileInfo(buf);
  }

  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }

  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }

  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }

  /** Modification time, to the millisecond a Date holds (what utimes is given). */
  get mtime(): Date {
    return new Date(this.mtimeSec * 1000 + Math.floor(this.mtimeNsec / 1e6));
  }

  /**
   * Same identity, same content, as git's index assumes: device, inode, size, and modification
   * and change times to the nanosecond.
   */
  get identity(): string {
    return `${this.dev}:${this.ino}:${this.size}:${this.mtimeSec}.${this.mtimeNsec}:${this.ctimeSec}.${this.ctimeNsec}`;
  }
}
