/**
 * Registry references: REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], Docker's grammar. The
 * registry is the first component when it looks like a host (a dot, a port, or `localhost`);
 * strata names no default registry (Docker Hub is one, and not reachable from everywhere), so a
 * reference without one is refused.
 */
export class ReferenceError extends Error {}

export interface Reference {
  /** host[:port] */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function parseReference(text: string): Reference {
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ReferenceError(`${text}: the digest must be sha256: and 64 hex digits`);
  }
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash < 0 || !(first.includes('.') || first.includes(':') || first === 'localhost')) {
    throw new ReferenceError(`${text}: name the registry (REGISTRY/REPOSITORY[:TAG], e.g. localhost:5000/app:1)`);
  }
  let repository = rest.slice(slash + 1);
  let tag: string | undefined;
  const colon = repository.lastIndexOf(':');
  if (colon >= 0) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
    if (!TAG.test(tag)) throw new ReferenceError(`${text}: invalid tag ${JSON.stringify(tag)}`);
  }
  if (repository === '' || !repository.split('/').every((c) => COMPONENT.test(c)) || repository.length > 255) {
    throw new ReferenceError(`${text}: invalid repository name (lowercase letters, digits, . _ - and /)`);
  }
  if (!/^[a-zA-Z0-9.-]+(?::\d+)?$/.test(first)) throw new ReferenceError(`${text}: invalid registry host ${JSON.stringify(first)}`);
  return { registry: first, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** The reference as text, `latest` when it names neither tag nor digest. */
export function formatReference(r: Reference): string {
  return `${r.registry}/${r.repository}${r.digest !== undefined ? `@${r.digest}` : `:${r.tag ?? 'latest'}`}`;
}
