/**
 * The build context: the directory COPY and ADD read from, minus what `.dockerignore` excludes
 * (Docker's rules, `!` exceptions included, through @balena/dockerignore). Sources are matched
 * with Go's filepath.Match per path component (`*`, `?`, `[a-z]`, `[!x]`, `\` escapes), never
 * leave the context, and are described (names, types, modes, owners, link targets, content) for
 * the build cache's key; host mtimes never enter it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';
import dockerignore, { type Ignore } from '@balena/dockerignore';
import { sys } from '../driver/native/sys.js';
import { FileInfo } from './fs/file-info.js';
import { resolveInRoot } from './fs/in-root.js';

export class ContextError extends Error {}

/** A file tree COPY reads from: the build context, or another stage's or image's rootfs. */
export interface SourceTree {
  /** Host directory of the tree's root. */
  root: string;
  /** Whether a path (relative, no leading slash) is excluded. */
  excluded(rel: string): boolean;
  /** What the cache key says about this tree besides the files' content (e.g. an image's layers). */
  identity?: string;
  /** The .dockerignore patterns ('' for none), for the cache's lstat summary of the sources. */
  exclusions: string;
}

export interface Source {
  /** Path relative to the tree's root ('' for the root itself), as written. */
  rel: string;
  /** The same after symlinks: .dockerignore applies to this one too. */
  realRel: string;
  /** Host path (symlinks of the source path resolved inside the tree). */
  host: string;
  stat: FileInfo;
}

export function loadContext(dir: string): SourceTree {
  if (!existsSync(dir) || !lstatSync(dir).isDirectory()) throw new ContextError(`the build context ${dir} is not a directory`);
  const file = posix.join(dir, '.dockerignore');
  // A CommonJS module whose types declare an ES default export: under NodeNext the import is the
  // module object, and its `default` is the factory (the package sets both).
  const patterns = existsSync(file) ? readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')) : [];
  // Without patterns nothing is excluded, and every path of the walk skips the matcher.
  if (patterns.length === 0) return { root: dir, excluded: () => false, exclusions: '' };
  const ig: Ignore = dockerignore.default();
  ig.add(patterns);
  return { root: dir, excluded: (rel) => rel !== '' && ig.ignores(rel), exclusions: patterns.join('\n') };
}

/** A tree with nothing excluded: a stage's or an image's rootfs. */
export function rootfsTree(root: string, identity: string): SourceTree {
  return { root, excluded: () => false, identity, exclusions: '' };
}

const GLOB = /[*?[]/;

export function hasWildcard(pattern: string): boolean {
  return GLOB.test(pattern.replace(/\\./g, ''));
}

/** Go's filepath.Match for one path component, as a RegExp. */
function componentRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw new ContextError(`bad pattern ${JSON.stringify(pattern)}: unclosed [`);
      let body = pattern.slice(i + 1, end);
      if (body.startsWith('^') || body.startsWith('!')) body = '^' + body.slice(1);
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += escapeRe(ch);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(ch: string): string {
  return ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Clean a source as written ("./a/../b", "/x") into a path relative to the tree, refusing escapes. */
function cleanSource(src: string): string {
  const norm = posix.normalize('/' + src);
  if (posix.normalize(src).startsWith('../') || posix.normalize(src) === '..') {
    throw new ContextError(`${src}: forbidden path outside the build context`);
  }
  return norm.slice(1).replace(/\/$/, '');
}

/**
 * The sources a COPY or ADD names, in order. A pattern with wildcards may match nothing only
 * alongside others that match; a plain path must exist.
 */
export function matchSources(tree: SourceTree, patterns: string[]): Source[] {
  const out: Source[] = [];
  for (const pattern of patterns) {
    const rel = cleanSource(pattern);
    const found: Source[] = [];
    if (!hasWildcard(rel)) {
      const host = resolveInRoot(tree.root, '/' + rel);
      const realRel = posix.relative(tree.root, host);
      const stat = FileInfo.lstat(host);
      if (stat === undefined || tree.excluded(rel) || tree.excluded(realRel)) {
        throw new ContextError(`${pattern}: no such file or directory in the ${tree.identity === undefined ? 'build context' : 'source'}${stat !== undefined ? ' (excluded by .dockerignore)' : ''}`);
      }
      found.push({ rel, realRel, host, stat });
    } else {
      glob(tree, '', rel.split('/'), found);
      found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
    }
    out.push(...found);
  }
  if (out.length === 0) throw new ContextError(`no source files were specified (nothing matches ${patterns.join(' ')})`);
  return out;
}

function glob(tree: SourceTree, dir: string, parts: string[], out: Source[]): void {
  const [head, ...rest] = parts;
  if (head === undefined) return;
  const hostDir = resolveInRoot(tree.root, '/' + dir);
  if (!hasWildcard(head)) {
    const rel = dir === '' ? head.replace(/\\(.)/g, '$1') : `${dir}/${head.replace(/\\(.)/g, '$1')}`;
    visit(tree, rel, rest, out);
    return;
  }
  const re = componentRegExp(head);
  let names: string[];
  try {
    names = readdirSync(hostDir).sort();
  } catch {
    return;
  }
  for (const name of names) if (re.test(name)) visit(tree, dir === '' ? name : `${dir}/${name}`, rest, out);
}

function visit(tree: SourceTree, rel: string, rest: string[], out: Source[]): void {
  if (tree.excluded(rel)) return;
  const host = resolveInRoot(tree.root, '/' + rel);
  const realRel = posix.relative(tree.root, host);
  if (realRel !== rel && tree.excluded(realRel)) return;
  const stat = FileInfo.lstat(host);
  if (stat === undefined) return;
  if (rest.length === 0) out.push({ rel, realRel, host, stat });
  else if (stat.isDirectory()) glob(tree, rel, rest, out);
}

export interface Entry {
  /** Path below the source ('' is the source itself). */
  sub: string;
  host: string;
  stat: FileInfo;
}

/**
 * A source and, for a directory, everything below it that is not excluded, parents first. An
 * excluded directory is still entered, as Docker does, for what an exception (`!pattern`) keeps.
 */
export function walk(tree: SourceTree, src: Source): Entry[] {
  const out: Entry[] = [{ sub: '', host: src.host, stat: src.stat }];
  if (src.stat.isDirectory()) below(tree, src, '', src.host, out);
  return out;
}

function below(tree: SourceTree, src: Source, sub: string, host: string, out: Entry[]): void {
  for (const name of readdirSync(host).sort()) {
    const childSub = sub === '' ? name : `${sub}/${name}`;
    // Exclusions apply where the files really are (a symlinked source leads elsewhere).
    const rel = src.realRel === '' ? childSub : `${src.realRel}/${childSub}`;
    const childHost = host === '/' ? `/${name}` : `${host}/${name}`;
    const stat = FileInfo.lstat(childHost);
    // Removed since it was listed: as if never there.
    if (stat === undefined) continue;
    const excluded = tree.excluded(rel);
    if (!stat.isDirectory()) {
      if (!excluded) out.push({ sub: childSub, host: childHost, stat });
      continue;
    }
    const at = out.length;
    out.push({ sub: childSub, host: childHost, stat });
    below(tree, src, childSub, childHost, out);
    // An excluded directory stays only as the parent of something an exception keeps.
    if (excluded && out.length === at + 1) out.pop();
  }
}

/** What the cache key says of a step's sources, and how many there are and of what kind. */
export interface SourceDescription {
  digest: string;
  dirs: number;
  count: number;
}

/** What describeSources keeps between builds (builder/file-digests.ts). */
export interface DescribeCache {
  digest(path: string, st: FileInfo): Promise<string>;
  described(key: string, summary: string): Promise<SourceDescription | undefined>;
  remember(key: string, summary: string, d: SourceDescription): void;
}

/**
 * The cache key's view of the sources: for each entry its path, type, mode, owner, link target
 * and content digest, in a fixed order. Host mtimes are left out on purpose. With a cache, the
 * description made last time is reused while a summary of the sources' lstat (every entry's path,
 * mode, owner, device, inode, size, mtime and ctime) is unchanged: the identity per-file digests
 * already trust. The summary covers excluded entries too (a change there only costs a recompute)
 * and the exclusion patterns themselves.
 */
export async function describeSources(tree: SourceTree, sources: Source[], cache?: DescribeCache): Promise<SourceDescription> {
  const shape = { dirs: sources.filter((x) => x.stat.isDirectory()).length, count: sources.length };
  const key = `${tree.root}\0${JSON.stringify(sources.map((s) => s.rel))}`;
  const summary = cache !== undefined ? lstatSummary(tree, sources) : undefined;
  if (summary !== undefined) {
    const known = await cache!.described(key, summary);
    if (known !== undefined) return known;
  }
  const walked = sources.map((src) => walk(tree, src));
  const h = createHash('sha256');
  h.update(`tree ${tree.identity ?? 'context'}\n`);
  for (let i = 0; i < sources.length; i++) {
    const srcWord = JSON.stringify(sources[i]!.rel);
    for (const e of walked[i]!) {
      const s = e.stat;
      const kind = s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : s.isFile() ? 'f' : 'o';
      h.update(`${srcWord} ${JSON.stringify(e.sub)} ${kind} ${(s.mode & 0o7777).toString(8)} ${s.uid}:${s.gid}`);
      if (kind === 'l') h.update(` -> ${readlinkSync(e.host)}`);
      if (kind === 'f') h.update(` ${s.size} ${await (cache?.digest(e.host, s) ?? fileDigest(e.host))}`);
      h.update('\n');
    }
  }
  const described = { digest: h.digest('hex'), ...shape };
  if (summary !== undefined) cache!.remember(key, summary, described);
  return described;
}

/** A digest of the sources' lstat (sys.treeSummary) and of the exclusions; undefined if a walk fails. */
function lstatSummary(tree: SourceTree, sources: Source[]): string | undefined {
  const h = createHash('sha256');
  h.update(`${tree.exclusions}\0`);
  for (const src of sources) {
    const below = sys.treeSummary(src.host);
    // The description's own walk reports the error, if it persists.
    if (typeof below === 'number') return undefined;
    h.update(`${src.rel}\0${src.realRel}\0${below}\n`);
  }
  return h.digest('hex');
}

async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
