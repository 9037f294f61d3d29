/**
 * A Dockerfile as typed instructions grouped into stages. Arguments are kept as written (quotes
 * included) wherever Docker expands them at build time, because their values depend on the build
 * args and the stage's ENV: the builder expands them with ShellLex as it goes.
 */
import { DockerfileError } from './errors.js';
import { logicalLines, type Directives, type Heredoc, type LogicalLine } from './lines.js';

export type Command = { form: 'exec'; args: string[] } | { form: 'shell'; text: string };

interface Base {
  line: number;
  endLine: number;
  /** The instruction as written on one line (continuations joined): history's created_by uses it. */
  original: string;
}

export type Flags = Record<string, string | true>;

export interface FromInstruction extends Base {
  kind: 'FROM';
  image: string;
  stageName?: string;
  platform?: string;
}

export type Instruction =
  | FromInstruction
  | (Base & { kind: 'RUN'; command: Command; heredocs: Heredoc[]; network?: string })
  | (Base & { kind: 'CMD' | 'ENTRYPOINT'; command: Command })
  | (Base & { kind: 'SHELL'; args: string[] })
  | (Base & {
      kind: 'COPY' | 'ADD';
      /** Raw words; a heredoc source is `<<NAME`. */
      sources: string[];
      dest: string;
      from?: string;
      chown?: string;
      chmod?: string;
      checksum?: string;
      link: boolean;
      /** JSON form: the words are taken literally (JSON strings), still expanded. */
      json: boolean;
      heredocs: Heredoc[];
    })
  | (Base & { kind: 'ENV' | 'LABEL'; pairs: Array<[key: string, value: string]> })
  | (Base & { kind: 'ARG'; args: Array<{ name: string; value?: string }> })
  | (Base & { kind: 'WORKDIR' | 'USER' | 'STOPSIGNAL' | 'MAINTAINER'; value: string })
  | (Base & { kind: 'EXPOSE'; ports: string[] })
  | (Base & { kind: 'VOLUME'; paths: string[]; json: boolean })
  | (Base & { kind: 'HEALTHCHECK'; test: null | Command; options: HealthOptions })
  | (Base & { kind: 'ONBUILD'; trigger: string; instruction: Instruction });

export interface HealthOptions {
  interval?: string;
  timeout?: string;
  startPeriod?: string;
  startInterval?: string;
  retries?: number;
}

export interface Stage {
  index: number;
  /** Lowercased, as Docker compares stage names. */
  name?: string;
  from: FromInstruction;
  instructions: Instruction[];
}

export interface Dockerfile {
  file: string;
  directives: Directives;
  /** ARGs before the first FROM: usable in FROM lines, and (redeclared) in stages. */
  globalArgs: Array<Extract<Instruction, { kind: 'ARG' }>>;
  stages: Stage[];
}

const KNOWN = [
  'FROM', 'RUN', 'CMD', 'ENTRYPOINT', 'SHELL', 'COPY', 'ADD', 'ENV', 'LABEL', 'ARG', 'WORKDIR', 'USER',
  'STOPSIGNAL', 'MAINTAINER', 'EXPOSE', 'VOLUME', 'HEALTHCHECK', 'ONBUILD',
] as const;
type Keyword = (typeof KNOWN)[number];

const ALLOWED_FLAGS: Partial<Record<Keyword, string[]>> = {
  FROM: ['platform'],
  RUN: ['network'],
  COPY: ['from', 'chown', 'chmod', 'link'],
  ADD: ['chown', 'chmod', 'link', 'checksum'],
  HEALTHCHECK: ['interval', 'timeout', 'start-period', 'start-interval', 'retries'],
};
const BOOLEAN_FLAGS = new Set(['link']);

const STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;

/**
 * Words split on whitespace outside quotes, quotes and escapes kept (Docker's parseWords): the
 * builder's expansion removes them later.
 */
export function splitRaw(text: string, escape: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: string | null = null;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote === null && /\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    word += ch;
    if (ch === escape && quote !== "'" && i + 1 < text.length) {
      word += text[++i];
      continue;
    }
    if (quote === null && (ch === '"' || ch === "'")) quote = ch;
    else if (ch === quote) quote = null;
  }
  if (inWord) words.push(word);
  return words;
}

/** Leading `--name=value` / `--name` words, and the text after them. */
function takeFlags(rest: string, escape: string): { flags: Array<[string, string | true]>; rest: string } {
  const flags: Array<[string, string | true]> = [];
  let s = rest;
  for (;;) {
    s = s.trimStart();
    if (!s.startsWith('--')) break;
    const word = splitRaw(s, escape)[0]!;
    s = s.slice(word.length);
    const eq = word.indexOf('=');
    flags.push(eq < 0 ? [word.slice(2), true] : [word.slice(2, eq), word.slice(eq + 1)]);
  }
  return { flags, rest: s.trim() };
}

/** A JSON array of strings, or null when the text is not one (then it is the shell form). */
function jsonArray(text: string): string[] | null {
  if (!text.startsWith('[')) return null;
  try {
    const v: unknown = JSON.parse(text);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // Not JSON: the shell form, as Docker treats it.
  }
  return null;
}

class InstructionParser {
  constructor(
    private readonly file: string,
    private readonly escape: string,
  ) {}

  private fail(l: LogicalLine, message: string, keyword?: string): never {
    throw new DockerfileError(this.file, l.line, message, keyword);
  }

  parse(l: LogicalLine, nested = false): Instruction {
    const keyword = l.keyword.toUpperCase();
    if (!(KNOWN as readonly string[]).includes(keyword)) this.fail(l, `unknown instruction: ${l.keyword}`);
    const kw = keyword as Keyword;
    const base: Base = { line: l.line, endLine: l.endLine, original: `${kw}${l.rest === '' ? '' : ' ' + l.rest}` };
    const allowed = ALLOWED_FLAGS[kw] ?? [];
    const { flags: flagList, rest } = allowed.length > 0 ? takeFlags(l.rest, this.escape) : { flags: [], rest: l.rest };
    const flags: Flags = {};
    for (const [name, value] of flagList) {
      if (!allowed.includes(name)) {
        if (kw === 'RUN' && name === 'mount') this.fail(l, 'RUN --mount is not supported by strata', kw);
        this.fail(l, `unknown flag: --${name}`, kw);
      }
      if (name in flags) this.fail(l, `--${name} given twice`, kw);
      if (BOOLEAN_FLAGS.has(name) ? value !== true && value !== 'true' && value !== 'false' : value === true) {
        this.fail(l, BOOLEAN_FLAGS.has(name) ? `--${name} takes no value` : `--${name} needs a value (--${name}=VALUE)`, kw);
      }
      flags[name] = value;
    }
    const str = (name: string): string | undefined => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);
    const need = (ok: boolean, what: string): void => {
      if (!ok) this.fail(l, what, kw);
    };

    switch (kw) {
      case 'FROM': {
        const words = splitRaw(rest, this.escape);
        need(words.length === 1 || (words.length === 3 && words[1]!.toUpperCase() === 'AS'), 'requires either one or three arguments (FROM IMAGE [AS NAME])');
        const stageName = words.length === 3 ? words[2]!.toLowerCase() : undefined;
        if (stageName !== undefined && !STAGE_NAME.test(stageName)) this.fail(l, `invalid name for build stage: "${words[2]}"; names start with a letter and use only letters, digits, '-', '_' and '.'`, kw);
        return {
          ...base, kind: 'FROM', image: words[0]!,
          ...(stageName !== undefined ? { stageName } : {}),
          ...(str('platform') !== undefined ? { platform: str('platform')! } : {}),
        };
      }
      case 'RUN': {
        need(rest !== '', 'requires at least one argument');
        const network = str('network');
        if (network !== undefined && !['none', 'host', 'default'].includes(network)) this.fail(l, `--network must be none, host or default, not "${network}"`, kw);
        return { ...base, kind: 'RUN', command: this.command(rest), heredocs: l.heredocs, ...(network !== undefined ? { network } : {}) };
      }
      case 'CMD':
      case 'ENTRYPOINT':
        need(rest !== '', 'requires at least one argument');
        return { ...base, kind: kw, command: this.command(rest) };
      case 'SHELL': {
        const args = jsonArray(rest);
        need(args !== null && args.length > 0, 'requires the arguments to be a JSON array of strings, e.g. SHELL ["/bin/sh", "-c"]');
        return { ...base, kind: 'SHELL', args: args! };
      }
      case 'COPY':
      case 'ADD': {
        const json = jsonArray(rest);
        const words = json ?? splitRaw(rest, this.escape);
        need(words.length >= 2, 'requires at least two arguments: one or more sources and a destination');
        if (kw === 'ADD' && str('from') !== undefined) this.fail(l, 'unknown flag: --from', kw);
        const link = flags['link'];
        return {
          ...base, kind: kw, sources: words.slice(0, -1), dest: words[words.length - 1]!,
          json: json !== null, heredocs: l.heredocs, link: link === true || link === 'true',
          ...(str('from') !== undefined ? { from: str('from')! } : {}),
          ...(str('chown') !== undefined ? { chown: str('chown')! } : {}),
          ...(str('chmod') !== undefined ? { chmod: str('chmod')! } : {}),
          ...(str('checksum') !== undefined ? { checksum: str('checksum')! } : {}),
        };
      }
      case 'ENV':
      case 'LABEL':
        return { ...base, kind: kw, pairs: this.pairs(l, kw, rest) };
      case 'ARG': {
        const words = splitRaw(rest, this.escape);
        need(words.length > 0, 'requires at least one argument');
        return {
          ...base, kind: 'ARG',
          args: words.map((w) => {
            const eq = w.indexOf('=');
            const name = eq < 0 ? w : w.slice(0, eq);
            if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) this.fail(l, `invalid name "${name}"`, kw);
            return eq < 0 ? { name } : { name, value: w.slice(eq + 1) };
          }),
        };
      }
      case 'WORKDIR':
      case 'USER':
      case 'STOPSIGNAL': {
        const words = splitRaw(rest, this.escape);
        need(words.length === 1, 'requires exactly one argument');
        return { ...base, kind: kw, value: words[0]! };
      }
      case 'MAINTAINER':
        need(rest !== '', 'requires exactly one argument');
        return { ...base, kind: 'MAINTAINER', value: rest };
      case 'EXPOSE': {
        const ports = splitRaw(rest, this.escape);
        need(ports.length > 0, 'requires at least one argument');
        return { ...base, kind: 'EXPOSE', ports };
      }
      case 'VOLUME': {
        const json = jsonArray(rest);
        const paths = json ?? splitRaw(rest, this.escape);
        need(paths.length > 0 && paths.every((p) => p !== ''), 'requires at least one argument, none of them empty');
        return { ...base, kind: 'VOLUME', paths, json: json !== null };
      }
      case 'HEALTHCHECK': {
        const words = splitRaw(rest, this.escape);
        if (words.length === 1 && words[0]!.toUpperCase() === 'NONE') {
          need(flagList.length === 0, 'HEALTHCHECK NONE takes no options');
          return { ...base, kind: 'HEALTHCHECK', test: null, options: {} };
        }
        need(words.length >= 2 && words[0]!.toUpperCase() === 'CMD', 'requires NONE, or [OPTIONS] CMD command');
        const options: HealthOptions = {};
        for (const [name, key] of [['interval', 'interval'], ['timeout', 'timeout'], ['start-period', 'startPeriod'], ['start-interval', 'startInterval']] as const) {
          const v = str(name);
          if (v === undefined) continue;
          if (parseDuration(v) === null) this.fail(l, `--${name}: "${v}" is not a duration (like 30s, 1m30s)`, kw);
          options[key] = v;
        }
        const retries = str('retries');
        if (retries !== undefined) {
          if (!/^\d+$/.test(retries)) this.fail(l, `--retries: "${retries}" is not a whole number`, kw);
          options.retries = parseInt(retries, 10);
        }
        const cmdText = rest.replace(/^\S+\s*/, '');
        return { ...base, kind: 'HEALTHCHECK', test: this.command(cmdText), options };
      }
      case 'ONBUILD': {
        need(!nested && rest !== '', nested ? 'ONBUILD cannot be nested' : 'requires an instruction to run later');
        const space = rest.search(/[ \t]/);
        const inner: LogicalLine = {
          ...l,
          keyword: space < 0 ? rest : rest.slice(0, space),
          rest: space < 0 ? '' : rest.slice(space).trim(),
        };
        const innerKw = inner.keyword.toUpperCase();
        if (innerKw === 'ONBUILD' || innerKw === 'FROM' || innerKw === 'MAINTAINER') this.fail(l, `${innerKw} is not allowed as an ONBUILD trigger`, kw);
        return { ...base, kind: 'ONBUILD', trigger: rest, instruction: this.parse(inner, true) };
      }
    }
  }

  private command(text: string): Command {
    const args = jsonArray(text);
    return args !== null ? { form: 'exec', args } : { form: 'shell', text };
  }

  /** ENV and LABEL: `k=v ...` (values raw), or the legacy `KEY value with spaces`. */
  private pairs(l: LogicalLine, kw: string, rest: string): Array<[string, string]> {
    const words = splitRaw(rest, this.escape);
    if (words.length === 0) this.fail(l, 'requires at least one argument', kw);
    if (!words[0]!.includes('=')) {
      // Legacy form: one key, the rest of the line is its value.
      const key = words[0]!;
      const value = rest.slice(rest.indexOf(key) + key.length).trim();
      if (kw === 'ENV' && value === '') this.fail(l, `ENV ${key} needs a value (ENV ${key}=VALUE)`, kw);
      return [[key, value]];
    }
    return words.map((w) => {
      const eq = w.indexOf('=');
      if (eq <= 0) this.fail(l, `"${w}" is not KEY=VALUE; mixing the two forms of ${kw} is not allowed`, kw);
      return [w.slice(0, eq), w.slice(eq + 1)];
    });
  }
}

/** Go's duration syntax as Docker accepts it (1h2m3.5s, 300ms); milliseconds, or null. */
export function parseDuration(text: string): number | null {
  if (text === '0') return 0;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (const m of text.matchAll(re)) {
    total += parseFloat(m[1]!) * unit[m[2]!]!;
    end = m.index + m[0].length;
  }
  return end === text.length && end > 0 ? total : null;
}

/** One instruction on its own (an ONBUILD trigger when it fires), at `line` of `file`. */
export function parseInstruction(text: string, escape: string, file: string, line: number): Instruction {
  const body = text.trim();
  const space = body.search(/[ \t]/);
  const l: LogicalLine = {
    keyword: space < 0 ? body : body.slice(0, space),
    rest: space < 0 ? '' : body.slice(space).trim(),
    line,
    endLine: line,
    heredocs: [],
  };
  return new InstructionParser(file, escape).parse(l);
}

export function parseDockerfile(text: string, file = 'Dockerfile'): Dockerfile {
  const { directives, lines } = logicalLines(text, file);
  const parser = new InstructionParser(file, directives.escape);
  const out: Dockerfile = { file, directives, globalArgs: [], stages: [] };
  const names = new Set<string>();
  for (const l of lines) {
    const ins = parser.parse(l);
    if (ins.kind === 'FROM') {
      if (ins.stageName !== undefined) {
        if (names.has(ins.stageName)) throw new DockerfileError(file, ins.line, `duplicate stage name "${ins.stageName}"`, 'FROM');
        names.add(ins.stageName);
      }
      out.stages.push({ index: out.stages.length, ...(ins.stageName !== undefined ? { name: ins.stageName } : {}), from: ins, instructions: [] });
      continue;
    }
    const stage = out.stages[out.stages.length - 1];
    if (stage === undefined) {
      if (ins.kind === 'ARG') {
        out.globalArgs.push(ins);
        continue;
      }
      throw new DockerfileError(file, ins.line, 'the first instruction must be FROM (only ARG may come before it)', ins.kind);
    }
    stage.instructions.push(ins);
  }
  if (out.stages.length === 0) throw new DockerfileError(file, lines.length > 0 ? lines[lines.length - 1]!.endLine : 1, 'no FROM instruction: the Dockerfile has no build stage');
  return out;
}
