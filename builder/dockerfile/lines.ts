/**
 * A Dockerfile's text as logical lines, the way Docker's parser reads it: parser directives at the
 * top (`# escape=`, `# syntax=`, `# check=`), comments and blank lines dropped, lines continued by
 * the escape character joined (comment and blank lines inside a continuation dropped too), and the
 * bodies of heredocs (`<<EOF`, `<<-EOF`, quoted delimiters) read after the line that opens them.
 */
import { DockerfileError } from './errors.js';

export interface Directives {
  escape: '\\' | '`';
  /** `# syntax=`: recorded, and otherwise ignored (strata has one frontend). */
  syntax?: string;
}

export interface Heredoc {
  /** The delimiter word, without quotes. */
  name: string;
  /** The body, every line ending in a newline. */
  body: string;
  /** False when the delimiter was quoted: the body is taken as is. */
  expand: boolean;
  /** `<<-`: leading tabs were stripped from the body and the closing line. */
  chomp: boolean;
}

export interface LogicalLine {
  /** The first word, as written. */
  keyword: string;
  /** Everything after the keyword, continuations joined. */
  rest: string;
  /** 1-based line numbers of the first and last physical lines (heredoc bodies included). */
  line: number;
  endLine: number;
  heredocs: Heredoc[];
}

const DIRECTIVE = /^#[ \t]*([A-Za-z][A-Za-z0-9]*)[ \t]*=[ \t]*(.*?)[ \t]*$/;
const KNOWN_DIRECTIVES = new Set(['escape', 'syntax', 'check']);
/** Instructions whose arguments may open heredocs. */
const HEREDOC_INSTRUCTIONS = new Set(['RUN', 'COPY', 'ADD']);
/** `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`, optionally after a file descriptor number (`3<<EOF`). */
const HEREDOC = /(?:^|[ \t])\d*<<(-?)(["']?)([A-Za-z0-9_][A-Za-z0-9_.-]*)\2(?=[ \t]|$)/g;

function isBlank(line: string): boolean {
  return line.trim() === '';
}

function isComment(line: string): boolean {
  return line.trimStart().startsWith('#');
}

export function readDirectives(lines: string[], file: string): { directives: Directives; next: number } {
  const directives: Directives = { escape: '\\' };
  const seen = new Set<string>();
  let i = 0;
  for (; i < lines.length; i++) {
    const m = DIRECTIVE.exec(lines[i]!);
    if (m === null) break;
    const name = m[1]!.toLowerCase();
    if (!KNOWN_DIRECTIVES.has(name)) break;
    if (seen.has(name)) throw new DockerfileError(file, i + 1, `only one ${name} parser directive can be used`);
    seen.add(name);
    const value = m[2]!;
    if (name === 'escape') {
      if (value !== '\\' && value !== '`') throw new DockerfileError(file, i + 1, `invalid escape token '${value}': it must be \\ or \``);
      directives.escape = value;
    } else if (name === 'syntax') directives.syntax = value;
  }
  return { directives, next: i };
}

/** Remove a trailing escape character (and the blanks after it); null when the line does not continue. */
function continued(line: string, escape: string): string | null {
  const trimmed = line.replace(/[ \t]+$/, '');
  if (!trimmed.endsWith(escape)) return null;
  return trimmed.slice(0, -1);
}

export function logicalLines(text: string, file: string): { directives: Directives; lines: LogicalLine[] } {
  const physical = text.replace(/^\uFEFF/, '').split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  // A final newline does not start another line.
  if (physical.length > 0 && physical[physical.length - 1] === '') physical.pop();
  const { directives, next } = readDirectives(physical, file);
  const out: LogicalLine[] = [];
  let i = next;
  while (i < physical.length) {
    const first = physical[i]!;
    if (isBlank(first) || isComment(first)) {
      i++;
      continue;
    }
    const start = i;
    let text = first;
    let more = continued(text, directives.escape);
    i++;
    while (more !== null) {
      text = more;
      // Comment and blank lines inside a continuation are dropped (Docker warns about blank ones).
      while (i < physical.length && (isComment(physical[i]!) || isBlank(physical[i]!))) i++;
      if (i >= physical.length) break;
      text += physical[i]!;
      i++;
      more = continued(text, directives.escape);
    }
    const body = text.trimStart();
    const space = body.search(/[ \t]/);
    const keyword = space < 0 ? body : body.slice(0, space);
    const rest = space < 0 ? '' : body.slice(space).trim();
    const line: LogicalLine = { keyword, rest, line: start + 1, endLine: i, heredocs: [] };
    if (HEREDOC_INSTRUCTIONS.has(keyword.toUpperCase()) || (keyword.toUpperCase() === 'ONBUILD' && HEREDOC_INSTRUCTIONS.has(rest.split(/[ \t]/)[0]!.toUpperCase()))) {
      for (const m of rest.matchAll(HEREDOC)) {
        const chomp = m[1] === '-';
        const name = m[3]!;
        const bodyLines: string[] = [];
        let closed = false;
        while (i < physical.length) {
          let l = physical[i]!;
          i++;
          if (chomp) l = l.replace(/^\t+/, '');
          if (l === name) {
            closed = true;
            break;
          }
          bodyLines.push(l);
        }
        if (!closed) throw new DockerfileError(file, line.line, `heredoc <<${name} is not closed (no line "${name}" follows)`, keyword.toUpperCase());
        line.heredocs.push({ name, body: bodyLines.map((l) => l + '\n').join(''), expand: m[2] === '', chomp });
      }
      line.endLine = i;
    }
    out.push(line);
  }
  return { directives, lines: out };
}
