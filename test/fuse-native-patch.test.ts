// Proves each fix of native-deps/fuse-native/strata.patch on a real mount. A child process
// (test/fixtures/fuse-native-child.mjs) serves a tiny in-memory filesystem with the patched
// module and logs every op it receives; this process acts on the mount and never serves it.
// Needs root and /dev/fuse.
import t from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const exec = promisify(execFile)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const fixtures = path.join(root, 'test', 'fixtures')

const UTIME_NOW = (1 << 30) - 1
const UTIME_OMIT = (1 << 30) - 2
const { O_CREAT, O_EXCL, O_TRUNC } = fs.constants
const BIG = 2n ** 32n // the fixture numbers its inodes from BIG + 1: / is +1, /ctx +2, /xattr +3

interface OpRecord {
  op: string
  ctx: [number, number, number, number] // uid, gid, pid, umask
  path?: string | null
  fd?: number
  [key: string]: unknown
}

if (process.getuid?.() !== 0 || !existsSync('/dev/fuse')) {
  t.plan(0, 'needs root and /dev/fuse')
} else {
  await main()
}

async function main (): Promise<void> {
  // Idempotent: a no-op when node_modules/fuse-native already carries this patch and its build.
  await exec('bash', [path.join(root, 'native-deps/fuse-native/install.sh')], { cwd: root })

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'strata-fuse-native-'))
  await fs.chmod(dir, 0o755) // the unprivileged caller of the context test must reach the mount
  const mnt = path.join(dir, 'mnt')
  const logFile = path.join(dir, 'ops.jsonl')
  await fs.mkdir(mnt)
  await fs.writeFile(logFile, '')

  const child = spawn(process.execPath, [path.join(fixtures, 'fuse-native-child.mjs'), mnt, logFile], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const childOut = lines(child)
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))

  t.teardown(async () => {
    if (isMounted(mnt)) await exec('umount', ['-l', mnt]).catch(() => {})
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
    if (!isMounted(mnt)) await fs.rm(dir, { recursive: true, force: true })
  })

  await t.resolves(childOut.waitFor('mounted', 20000).catch(err => {
    throw new Error(`${String(err)}\nchild stderr:\n${stderr}`)
  }), 'the child mounts the filesystem')
  const m = (name: string): string => path.join(mnt, name)

  // Op records logged by the child; `mark()` then `since(mark)` selects those of one action.
  const readOps = (): OpRecord[] => readFileSync(logFile, 'utf8').split('\n').filter(Boolean)
    .map(line => JSON.parse(line) as OpRecord)
  const mark = (): number => readOps().length
  const since = (n: number, op?: string): OpRecord[] => readOps().slice(n).filter(r => op === undefined || r.op === op)

  t.test('the patched module is the one loaded', async t => {
    const { stdout } = await exec(process.execPath, ['-p', "require('fuse-native').STRATA_PATCHED"], { cwd: root })
    t.equal(stdout.trim(), '1')
  })

  t.test('index.d.ts: the patched API type-checks under strict NodeNext, the old one does not', async t => {
    const tsc = path.join(root, 'node_modules', '.bin', 'tsc')
    const result = await exec(tsc, ['--noEmit', '--strict', '--target', 'ES2022', '--module', 'NodeNext',
      '--moduleResolution', 'NodeNext', '--types', 'node', '--noUncheckedIndexedAccess',
      '--exactOptionalPropertyTypes', '--esModuleInterop', path.join(fixtures, 'fuse-native-types.ts')],
    { cwd: root }).then(() => '', (err: { stdout?: string }) => err.stdout ?? String(err))
    t.equal(result, '', 'tsc reports nothing')
  })

  t.test('context: handlers see the uid, gid and pid of the calling process (allow_other)', async t => {
    const n = mark()
    const caller = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'stat', '-c', '%s', m('ctx')],
      { stdio: ['ignore', 'pipe', 'pipe'] })
    const [code, out] = await finished(caller)
    t.equal(code, 0, `stat as nobody succeeds: ${out}`)
    const ops = since(n, 'getattr').filter(r => r.path === '/ctx')
    t.ok(ops.length > 0, 'getattr /ctx reached the filesystem')
    for (const r of ops) {
      t.same(r.ctx.slice(0, 3), [65534, 65534, caller.pid], 'uid, gid and pid of the stat process')
    }

    const u = mark()
    await exec('sh', ['-c', `umask 027 && : > '${m('umask')}'`])
    const [create] = since(u, 'create')
    t.equal(create?.ctx[3], 0o027, 'create sees the caller\'s umask')
  })

  t.test('utimens: touch -m sets mtime to the nanosecond and leaves atime (UTIME_OMIT)', async t => {
    await fs.writeFile(m('times'), 'x')
    const before = await fs.stat(m('times'), { bigint: true })
    const n = mark()
    await exec('touch', ['-m', '-d', '2001-02-03 04:05:06.123456789', m('times')], { env: { ...process.env, TZ: 'UTC' } })
    const after = await fs.stat(m('times'), { bigint: true })
    const expected = BigInt(Date.UTC(2001, 1, 3, 4, 5, 6)) * 1000000n + 123456789n
    t.equal(after.mtimeNs, expected, 'mtime is exactly 2001-02-03 04:05:06.123456789')
    t.equal(after.atimeNs, before.atimeNs, 'atime is unchanged')
    const [u] = since(n, 'utimens')
    t.match(u, { atimeNsec: UTIME_OMIT, mtimeSec: 981173106, mtimeNsec: 123456789 }, 'handler args')
    const { stdout } = await exec('stat', ['-c', '%y', m('times')], { env: { ...process.env, TZ: 'UTC' } })
    t.match(stdout, /^2001-02-03 04:05:06\.123456789 /, 'stat(1) shows it')
  })

  t.test('utimens: touch -a sets atime to now and leaves mtime (UTIME_NOW, UTIME_OMIT)', async t => {
    const before = await fs.stat(m('times'), { bigint: true })
    const n = mark()
    await exec('touch', ['-a', m('times')])
    const after = await fs.stat(m('times'), { bigint: true })
    t.equal(after.mtimeNs, before.mtimeNs, 'mtime is unchanged')
    const now = BigInt(Date.now()) * 1000000n
    t.ok(after.atimeNs > now - 60n * 1000000000n && after.atimeNs <= now, 'atime is now')
    const [u] = since(n, 'utimens')
    t.match(u, { atimeNsec: UTIME_NOW, mtimeNsec: UTIME_OMIT }, 'handler args')
  })

  t.test('stat and readdir show the 64-bit inode numbers the filesystem returned (use_ino)', async t => {
    const st = await fs.stat(m('xattr'), { bigint: true })
    t.equal(st.ino, BIG + 3n, 'fs.stat ino')
    const { stdout } = await exec('stat', ['-c', '%i', m('xattr')])
    t.equal(stdout.trim(), String(BIG + 3n), 'stat(1) ino')
    const ls = await exec('ls', ['-i', mnt])
    t.match(ls.stdout, new RegExp(`\\b${BIG + 3n} xattr\\b`), 'readdir d_ino (ls -i)')
  })

  t.test('stat objects in the Date / milliseconds form keep their values (pre-1970, > 2^32)', async t => {
    const st = await fs.stat(m('legacy'), { bigint: true })
    t.equal(st.mtimeNs, -1500000000n, 'mtime -1.5 s')
    t.equal(st.atimeNs, 1234567891000n, 'atime 1234567.891 ms')
    t.equal(st.size, 2n ** 33n + 1n, 'size')
    t.equal(st.ino, 2n ** 40n + 5n, 'ino')
  })

  t.test('statfs: block and inode counts above 2^32 survive', async t => {
    const s = await fs.statfs(mnt, { bigint: true })
    t.equal(s.blocks, 2n ** 33n + 7n)
    t.equal(s.bavail, 2n ** 33n + 3n)
    t.equal(s.files, 2n ** 32n + 11n)
  })

  t.test('create receives the open flags (O_EXCL, O_TRUNC)', async t => {
    const n = mark()
    await (await fs.open(m('excl'), 'wx')).close()
    await (await fs.open(m('trunc'), 'w')).close()
    const creates = since(n, 'create')
    const flags = (p: string): number => Number(creates.find(r => r.path === p)?.flags)
    t.equal(flags('/excl') & (O_CREAT | O_EXCL), O_CREAT | O_EXCL, 'wx: O_CREAT|O_EXCL')
    t.equal(flags('/trunc') & O_TRUNC, O_TRUNC, 'w: O_TRUNC')
    t.equal(flags('/trunc') & O_EXCL, 0, 'w: no O_EXCL')
    await t.rejects(fs.open(m('excl'), 'wx'), { code: 'EEXIST' }, 'O_EXCL on an existing file')
  })

  t.test('fgetattr: an open, unlinked file is served through its fd (nullPath, hard_remove)', async t => {
    const n = mark()
    const fh = await fs.open(m('unlinked'), 'w+')
    const fd = since(n, 'create')[0]?.fd
    t.ok(typeof fd === 'number' && fd > 0, 'create answered a handle')
    t.match(since(n, 'fgetattr'), [{ path: '/unlinked', fd }], 'libfuse asks fgetattr(path, fd) right after create')
    await fh.write('hello')
    await fs.unlink(m('unlinked'))
    t.notOk(existsSync(m('unlinked')), 'the name is gone')

    // fstat(2) itself sends GETATTR without the handle, and libfuse answers ENOENT for a node that
    // hard_remove left nameless without asking us (README: known limits). Requests that carry the
    // handle reach fgetattr(null, fd), and fstat then reads the attributes they cached.
    const u = mark()
    await fh.truncate(3) // SETATTR with the handle: ftruncate + fgetattr, no path to resolve
    const st = await fh.stat()
    t.equal(st.size, 3, 'fstat after ftruncate sees the new size')
    t.match(since(u, 'ftruncate'), [{ path: null, fd, size: 3 }], 'ftruncate(null, fd)')
    t.match(since(u, 'fgetattr'), [{ path: null, fd }], 'fgetattr(null, fd)')

    const w = mark()
    await fh.write('abc', 0)
    t.match(since(w, 'write'), [{ path: null, fd, len: 3 }], 'write gets a null path too (nopath)')
    const buf = Buffer.alloc(8)
    const { bytesRead } = await fh.read(buf, 0, 8, 0)
    t.equal(buf.subarray(0, bytesRead).toString(), 'abc', 'the unlinked file is still readable')
    const r = mark()
    await fh.close()
    // The kernel sends RELEASE after close(2) has returned.
    for (let i = 0; i < 100 && since(r, 'release').length === 0; i++) await sleep(20)
    t.match(since(r, 'release'), [{ path: null, fd }], 'release(null, fd)')
  })

  t.test('big_writes,max_write=131072: a 1 MiB write arrives in 128 KiB pieces', async t => {
    const n = mark()
    const data = Buffer.alloc(1 << 20)
    for (let i = 0; i < data.length; i++) data[i] = i % 251
    await fs.writeFile(m('big'), data)
    const fd = since(n, 'create').find(r => r.path === '/big')?.fd
    const writes = since(n, 'write').filter(r => r.fd === fd)
    const lens = writes.map(r => Number(r.len))
    t.equal(lens.reduce((a, b) => a + b, 0), data.length, 'all bytes arrived')
    t.equal(Math.max(...lens), 131072, 'in pieces of max_write')
    t.ok(lens.every(l => l > 4096), `none of 4 KiB or less: ${lens.join(',')}`)
    t.ok((await fs.readFile(m('big'))).equals(data), 'reads back')
  })

  t.test('getxattr and listxattr answer ERANGE instead of truncating, exact sizes on probes', async t => {
    const { stdout } = await exec('python3', [path.join(fixtures, 'xattr-probe.py'), m('xattr')])
    const r = JSON.parse(stdout) as Record<string, [number, number, string]>
    const ERANGE = 34
    t.same(r.get_probe, [100, 0, ''], 'getxattr size probe: the value length')
    t.same(r.get_small, [-1, ERANGE, ''], 'getxattr into 10 bytes: ERANGE')
    t.same(r.get_exact, [100, 0, 'x'.repeat(100)], 'getxattr into 100 bytes: the value')
    t.same(r.get_missing, [-1, 61, ''], 'missing attribute: ENODATA')
    const list = 'user.big\0user.small\0'
    t.same(r.list_probe, [list.length, 0, ''], 'listxattr size probe: exact, no padding')
    t.same(r.list_small, [-1, ERANGE, ''], 'listxattr into 5 bytes: ERANGE')
    t.same(r.list_exact, [list.length, 0, list], 'listxattr into an exact buffer')
    t.same(r.set_get, [5, 0, 'vvvvv'], 'setxattr then getxattr')
  })

  t.test('loop exit: after `umount MNT` the child learns it and exits by itself', async t => {
    await exec('umount', [mnt])
    await t.resolves(childOut.waitFor('loopExit', 10000), 'onLoopExit was called')
    await t.resolves(childOut.waitFor('loopExit event', 1000), "and 'loopExit' emitted")
    const code = await Promise.race([exited, sleep(10000).then(() => 'timeout' as const)])
    t.equal(code, 0, 'the child exited by itself, with status 0')
    t.match(readOps().at(-1), { op: 'loopExit' }, 'the last thing it logged')
    t.notOk(isMounted(mnt), 'nothing is mounted')
  })
}

function isMounted (mnt: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').some(l => l.split(' ')[1] === mnt)
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}

// Exit code and stdout+stderr of a child process.
function finished (p: ChildProcess): Promise<[number | null, string]> {
  let out = ''
  p.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  p.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  return new Promise(resolve => p.once('close', code => resolve([code, out])))
}

// Lines a child prints on stdout, awaitable one by one.
function lines (p: ChildProcess): { waitFor: (line: string, ms: number) => Promise<void> } {
  const seen: string[] = []
  const waiters = new Set<() => void>()
  let buf = ''
  p.stdout?.on('data', (d: Buffer) => {
    buf += d.toString()
    const parts = buf.split('\n')
    buf = parts.pop() ?? ''
    seen.push(...parts)
    for (const w of waiters) w()
  })
  return {
    waitFor: (line, ms) => new Promise((resolve, reject) => {
      const check = (): void => {
        if (!seen.includes(line)) return
        waiters.delete(check)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`no "${line}" from the child within ${ms} ms (saw: ${seen.join(', ')})`))
      }, ms)
      waiters.add(check)
      p.once('exit', () => setImmediate(check))
      check()
    })
  }
}
