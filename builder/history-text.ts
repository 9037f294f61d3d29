/**
 * The classic builder's history wording (`created_by`), which Go's fmt verbs shape: `%q` of a
 * string slice (`["sh" "-c"]`), `%v` of one (`[/bin/sh -ec]`), and the health check struct with
 * its durations and its retry count printed as a rune. Matching it keeps `docker history` of a
 * strata image reading like Docker's own.
 */

/** strconv.Quote for the common case (ASCII escapes as Go writes them). */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + '"';
}

/** fmt's %q of a []string. */
export function goQuoteSlice(items: string[]): string {
  return `[${items.map(goQuote).join(' ')}]`;
}

/** fmt's %v of a []string. */
export function goSlice(items: string[]): string {
  return `[${items.join(' ')}]`;
}

/** time.Duration's String() of a count of nanoseconds. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let d = Math.abs(Math.round(ns));
  const trim = (x: string) => (x.includes('.') ? x.replace(/0+$/, '').replace(/\.$/, '') : x);
  let out: string;
  if (d < 1e3) out = `${d}ns`;
  else if (d < 1e6) out = `${trim((d / 1e3).toFixed(3))}µs`;
  else if (d < 1e9) out = `${trim((d / 1e6).toFixed(6))}ms`;
  else {
    const h = Math.floor(d / 3.6e12);
    d -= h * 3.6e12;
    const m = Math.floor(d / 6e10);
    d -= m * 6e10;
    const s = `${trim((d / 1e9).toFixed(9))}s`;
    out = h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s;
  }
  return neg ? '-' + out : out;
}

/** fmt's %q of an int: a quoted rune literal. */
function goRune(n: number): string {
  if (n >= 0x20 && n < 0x7f) return n === 0x27 || n === 0x5c ? `'\\${String.fromCharCode(n)}'` : `'${String.fromCharCode(n)}'`;
  if (n < 0x100) return `'\\x${n.toString(16).padStart(2, '0')}'`;
  return `'${String.fromCodePoint(n)}'`;
}

/** `HEALTHCHECK %q` of Docker 20.10's HealthConfig {Test, Interval, Timeout, StartPeriod, Retries}. */
export function healthcheckText(test: string[], intervalNs = 0, timeoutNs = 0, startPeriodNs = 0, retries = 0): string {
  return `HEALTHCHECK &{${goQuoteSlice(test)} ${goQuote(goDuration(intervalNs))} ${goQuote(goDuration(timeoutNs))} ${goQuote(goDuration(startPeriodNs))} ${goRune(retries)}}`;
}
