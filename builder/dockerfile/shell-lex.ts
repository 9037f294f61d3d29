/**
 * Docker's word processing for the instructions it expands (FROM, COPY, ADD, ENV, ARG, LABEL,
 * EXPOSE, STOPSIGNAL, USER, VOLUME, WORKDIR): quotes removed, the escape character honoured, and
 * `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`,
 * `${VAR?msg}` expanded. Single quotes are literal; inside double quotes the escape character only
 * escapes `"`, `$` and itself. Unquoted expansions are split into words, quoted ones are not.
 */
export class ExpansionError extends Error {}

/** A variable's value, or undefined when it is not set. */
export type Lookup = (name: string) => string | undefined;

const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;
const SPACE = /\s/;

class Words {
  readonly words: string[] = [];
  private word = '';
  private inWord = false;

  /** A character that may split words (unquoted). */
  add(ch: string): void {
    if (SPACE.test(ch)) {
      if (this.inWord) this.end();
    } else this.raw(ch);
  }

  /** A character that is always part of the word (quoted or escaped). */
  raw(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }

  addString(s: string): void {
    for (const ch of s) this.add(ch);
  }

  rawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }

  /** Mark that a word exists even if empty (`""`). */
  touch(): void {
    this.inWord = true;
  }

  end(): void {
    if (this.inWord) this.words.push(this.word);
    this.word = '';
    this.inWord = false;
  }
}

class Scanner {
  private pos = 0;
  constructor(readonly src: string) {}
  peek(): string | undefined {
    return this.src[this.pos];
  }
  next(): string | undefined {
    return this.src[this.pos++];
  }
}

export class ShellLex {
  /** Names looked up since the last reset: what a cache key must include. */
  readonly used = new Set<string>();

  constructor(private readonly escape: string = '\\') {}

  /** One word: quotes removed and variables expanded, whitespace kept as it is. */
  word(text: string, lookup: Lookup): string {
    return this.run(text, lookup).result;
  }

  /** Words separated by unquoted whitespace, each processed as by word(). */
  words(text: string, lookup: Lookup): string[] {
    const w = this.run(text, lookup).words;
    w.end();
    return w.words;
  }

  private run(text: string, lookup: Lookup): { result: string; words: Words } {
    const s = new Scanner(text);
    const words = new Words();
    const result = this.until(s, undefined, lookup, words);
    return { result, words };
  }

  /** Process until `stop` (consumed) or the end; answers the text produced. */
  private until(s: Scanner, stop: string | undefined, lookup: Lookup, words: Words): string {
    let out = '';
    for (;;) {
      const ch = s.peek();
      if (ch === undefined) {
        if (stop !== undefined) throw new ExpansionError(`missing '${stop}' in ${JSON.stringify(s.src)}`);
        return out;
      }
      if (stop !== undefined && ch === stop) {
        s.next();
        return out;
      }
      if (ch === "'") {
        const v = this.singleQuoted(s);
        words.rawString(v);
        words.touch();
        out += v;
      } else if (ch === '"') {
        const v = this.doubleQuoted(s, lookup);
        words.rawString(v);
        words.touch();
        out += v;
      } else if (ch === '$') {
        const v = this.dollar(s, lookup);
        words.addString(v);
        out += v;
      } else {
        s.next();
        if (ch === this.escape) {
          const e = s.next();
          // A lone escape at the very end is dropped.
          if (e === undefined) return out;
          words.raw(e);
          out += e;
        } else {
          words.add(ch);
          out += ch;
        }
      }
    }
  }

  private singleQuoted(s: Scanner): string {
    s.next();
    let out = '';
    for (;;) {
      const ch = s.next();
      if (ch === undefined) throw new ExpansionError(`unexpected end of statement while looking for matching single-quote in ${JSON.stringify(s.src)}`);
      if (ch === "'") return out;
      out += ch;
    }
  }

  private doubleQuoted(s: Scanner, lookup: Lookup): string {
    s.next();
    let out = '';
    for (;;) {
      const ch = s.peek();
      if (ch === undefined) throw new ExpansionError(`unexpected end of statement while looking for matching double-quote in ${JSON.stringify(s.src)}`);
      if (ch === '"') {
        s.next();
        return out;
      }
      if (ch === '$') {
        out += this.dollar(s, lookup);
        continue;
      }
      s.next();
      if (ch === this.escape) {
        const e = s.peek();
        if (e === undefined) continue;
        if (e === '"' || e === '$' || e === this.escape) {
          out += s.next();
          continue;
        }
      }
      out += ch;
    }
  }

  private name(s: Scanner): string {
    let name = '';
    const first = s.peek();
    if (first === undefined || !NAME_START.test(first)) return name;
    while (s.peek() !== undefined && NAME_CHAR.test(s.peek()!)) name += s.next();
    return name;
  }

  private get(name: string, lookup: Lookup): string | undefined {
    this.used.add(name);
    return lookup(name);
  }

  private dollar(s: Scanner, lookup: Lookup): string {
    s.next();
    if (s.peek() !== '{') {
      const name = this.name(s);
      return name === '' ? '$' : (this.get(name, lookup) ?? '');
    }
    s.next();
    const name = this.name(s);
    if (name === '') throw new ExpansionError(`bad substitution in ${JSON.stringify(s.src)}`);
    const ch = s.next();
    if (ch === '}') return this.get(name, lookup) ?? '';
    if (ch === undefined) throw new ExpansionError(`missing '}' in ${JSON.stringify(s.src)}`);
    let colon = false;
    let mod = ch;
    if (ch === ':') {
      colon = true;
      const m = s.next();
      if (m === undefined) throw new ExpansionError(`missing '}' in ${JSON.stringify(s.src)}`);
      mod = m;
    }
    if (mod !== '-' && mod !== '+' && mod !== '?') {
      throw new ExpansionError(`unsupported modifier (${colon ? ':' : ''}${mod}) in substitution ${JSON.stringify(s.src)}`);
    }
    // The word is processed as a unit (its words are not split here); it may nest expansions.
    const word = this.until(s, '}', lookup, new Words());
    const value = this.get(name, lookup);
    const unset = colon ? value === undefined || value === '' : value === undefined;
    switch (mod) {
      case '-':
        return unset ? word : value!;
      case '+':
        return unset ? '' : word;
      default:
        if (unset) throw new ExpansionError(`${name}: ${word !== '' ? word : colon ? 'is not allowed to be empty' : 'is not set'}`);
        return value!;
    }
  }
}
