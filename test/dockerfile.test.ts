/**
 * The Dockerfile parser: golden files (UPDATE_GOLDEN=1 rewrites them), dockerfile-ast as a second
 * opinion on where instructions start and end, Docker's expansion rules, and errors that name the
 * file, the line and the instruction.
 */
import t from 'tap';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DockerfileParser } from 'dockerfile-ast';
import { parseDockerfile, parseDuration, type Instruction } from '../builder/dockerfile/parse.js';
import { ShellLex } from '../builder/dockerfile/shell-lex.js';
import { DockerfileError } from '../builder/dockerfile/errors.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'dockerfiles');
const dockerfiles = readdirSync(FIXTURES).filter((f) => f.endsWith('.Dockerfile'));

t.test('golden files: every fixture parses to its recorded structure', async (t) => {
  t.ok(dockerfiles.length >= 2, 'fixtures exist');
  for (const f of dockerfiles) {
    const parsed = parseDockerfile(readFileSync(join(FIXTURES, f), 'utf8'), f);
    const goldenPath = join(FIXTURES, f.replace(/\.Dockerfile$/, '.golden.json'));
    const text = JSON.stringify(parsed, null, 2) + '\n';
    if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(goldenPath, text);
    t.equal(text, readFileSync(goldenPath, 'utf8'), f);
  }
});

t.test('dockerfile-ast agrees on the instructions and the lines they span', async (t) => {
  for (const f of dockerfiles) {
    const text = readFileSync(join(FIXTURES, f), 'utf8');
    const ours = parseDockerfile(text, f);
    const flat: Instruction[] = [...ours.globalArgs];
    for (const s of ours.stages) flat.push(s.from, ...s.instructions);
    const theirs = DockerfileParser.parse(text).getInstructions();
    t.same(
      flat.map((i) => [i.kind, i.line, i.endLine]),
      theirs.map((i) => [i.getKeyword(), i.getRange().start.line + 1, i.getRange().end.line + 1]),
      f,
    );
  }
});

t.test('continuations, comments inside them, and the escape directive', async (t) => {
  const df = parseDockerfile('FROM scratch\nRUN a \\\n  # gone\n\n  b \\\n  c\n');
  const run = df.stages[0]!.instructions[0]!;
  t.same(run.kind === 'RUN' && run.command, { form: 'shell', text: 'a   b   c' });
  t.same([run.line, run.endLine], [2, 6]);
  const bt = parseDockerfile('# escape=`\nFROM scratch\nRUN dir c:\\ `\n  /w\n');
  const r2 = bt.stages[0]!.instructions[0]!;
  t.same(r2.kind === 'RUN' && r2.command, { form: 'shell', text: 'dir c:\\   /w' }, 'a backslash is ordinary under escape=`');
  const late = parseDockerfile('FROM scratch\n# escape=`\nRUN a \\\n b\n');
  t.equal(late.directives.escape, '\\', 'a directive after the first instruction is a comment');
  const unknown = parseDockerfile('# foo=bar\n# escape=`\nFROM scratch\n');
  t.equal(unknown.directives.escape, '\\', 'an unknown directive ends the directives');
});

t.test('heredocs: bodies, <<- tab stripping, quoted delimiters, several on one line', async (t) => {
  const df = parseDockerfile('FROM scratch\nRUN <<A cat - <<-"B"\none $x\nA\n\ttwo\n\tB\nCOPY <<X /x\nbody\nX\n');
  const [run, copy] = df.stages[0]!.instructions;
  t.same(run!.kind === 'RUN' && run!.heredocs, [
    { name: 'A', body: 'one $x\n', expand: true, chomp: false },
    { name: 'B', body: 'two\n', expand: false, chomp: true },
  ]);
  t.same([run!.line, run!.endLine], [2, 6]);
  t.same(copy!.kind === 'COPY' && [copy!.sources, copy!.dest, copy!.heredocs[0]!.body], [['<<X'], '/x', 'body\n']);
  t.throws(() => parseDockerfile('FROM scratch\nRUN <<EOF\nnever closed\n'), /Dockerfile:2: RUN: heredoc <<EOF is not closed/);
});

t.test('expansion follows Docker: quotes, escapes, defaults, alternatives, word splitting', async (t) => {
  const env: Record<string, string> = { A: 'a', EMPTY: '', SP: 'x  y', PATH: '/bin' };
  const get = (n: string) => env[n];
  const lex = new ShellLex('\\');
  const cases: Array<[string, string]> = [
    ['$A', 'a'], ['${A}', 'a'], ['${A}b', 'ab'], ['$Ab', ''], ['$UNSET', ''], ['pre${A}post', 'preapost'],
    ['${UNSET:-def}', 'def'], ['${EMPTY:-def}', 'def'], ['${EMPTY-def}', ''], ['${UNSET-def}', 'def'],
    ['${A:+alt}', 'alt'], ['${EMPTY:+alt}', ''], ['${EMPTY+alt}', 'alt'], ['${UNSET+alt}', ''],
    ['${UNSET:-${A}x}', 'ax'], ["'$A'", '$A'], ['"$A"', 'a'], ['"\\$A"', '$A'], ['\\$A', '$A'],
    ['"a\\nb"', 'a\\nb'], ['a\\ b', 'a b'], ['$', '$'], ['$1', '$1'], ['"${A:-x y}"', 'a'], ['${PATH}:/usr/bin', '/bin:/usr/bin'],
  ];
  for (const [input, want] of cases) t.equal(lex.word(input, get), want, input);
  t.same(lex.words('$SP "$SP" a\\ b \'c d\' ""', get), ['x', 'y', 'x  y', 'a b', 'c d', ''], 'unquoted expansions split, quoted ones do not');
  t.same([...lex.used].sort(), ['A', 'Ab', 'EMPTY', 'PATH', 'SP', 'UNSET'], 'the variables looked up are recorded');
  t.same(new ShellLex('`').word('c:\\dir\\`$A', get), 'c:\\dir\\$A', 'under escape=` a backslash is literal');
  t.throws(() => lex.word('${UNSET:?must be set}', get), /UNSET: must be set/);
  t.throws(() => lex.word('${EMPTY:?}', get), /EMPTY: is not allowed to be empty/);
  t.throws(() => lex.word('"open', get), /matching double-quote/);
  t.throws(() => lex.word("'open", get), /matching single-quote/);
  t.throws(() => lex.word('${A', get), /missing '}'/);
  t.throws(() => lex.word('${A/x/y}', get), /unsupported modifier/);
});

t.test('syntax errors name the file, the line and the instruction', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['FROM scratch\nFROB x\n', /^Dockerfile:2: unknown instruction: FROB$/],
    ['RUN true\n', /^Dockerfile:1: RUN: the first instruction must be FROM/],
    ['# only a comment\n', /no FROM instruction/],
    ['FROM scratch\nCOPY onlyone\n', /^Dockerfile:2: COPY: requires at least two arguments/],
    ['FROM scratch\nCOPY --frm=x a b\n', /^Dockerfile:2: COPY: unknown flag: --frm$/],
    ['FROM scratch\nADD --from=x a b\n', /^Dockerfile:2: ADD: unknown flag: --from$/],
    ['FROM scratch\n\nRUN --mount=type=cache,target=/x true\n', /^Dockerfile:3: RUN: RUN --mount is not supported/],
    ['FROM scratch\nRUN --network=bridge true\n', /--network must be none, host or default/],
    ['FROM scratch\nRUN\n', /^Dockerfile:2: RUN: requires at least one argument/],
    ['FROM scratch\nWORKDIR a b\n', /^Dockerfile:2: WORKDIR: requires exactly one argument/],
    ['FROM scratch\nSHELL /bin/sh -c\n', /SHELL: requires the arguments to be a JSON array/],
    ['FROM scratch\nENV a=1 b\n', /ENV: "b" is not KEY=VALUE/],
    ['FROM scratch\nENV ONLYKEY\n', /ENV ONLYKEY needs a value/],
    ['FROM a AS x\nFROM b AS X\n', /^Dockerfile:2: FROM: duplicate stage name "x"/],
    ['FROM a AS 1x\n', /invalid name for build stage/],
    ['FROM a b\n', /FROM: requires either one or three arguments/],
    ['FROM scratch\nHEALTHCHECK --interval=soon CMD true\n', /--interval: "soon" is not a duration/],
    ['FROM scratch\nHEALTHCHECK --retries=3 NONE\n', /HEALTHCHECK NONE takes no options/],
    ['FROM scratch\nONBUILD ONBUILD RUN x\n', /ONBUILD is not allowed as an ONBUILD trigger/],
    ['FROM scratch\nONBUILD FROM x\n', /FROM is not allowed as an ONBUILD trigger/],
    ['# escape=x\nFROM scratch\n', /^Dockerfile:1: invalid escape token/],
    ['# escape=\\\n# escape=`\nFROM scratch\n', /^Dockerfile:2: only one escape parser directive/],
    ['FROM scratch\nARG 1bad\n', /ARG: invalid name "1bad"/],
  ];
  for (const [text, re] of bad) {
    t.throws(() => parseDockerfile(text), re, JSON.stringify(text));
    try {
      parseDockerfile(text);
    } catch (err) {
      t.type(err, DockerfileError);
    }
  }
});

t.test('durations as Docker reads them', async (t) => {
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('1m30s'), 90_000);
  t.equal(parseDuration('1.5h'), 5_400_000);
  t.equal(parseDuration('300ms'), 300);
  t.equal(parseDuration('0'), 0);
  t.equal(parseDuration('10'), null);
  t.equal(parseDuration('s'), null);
});
