/**
 * Registry credentials, as `strata login` saved them: Docker's config format
 * (`{"auths": {"HOST": {"auth": base64("user:password")}}}`) in a file only its owner reads,
 * $STRATA_AUTH_FILE or ~/.config/strata/auth.json. Written to a temp name and renamed, so a
 * crash never leaves half a file.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Credentials {
  username: string;
  password: string;
}

interface AuthFile {
  auths?: Record<string, { auth?: string }>;
}

export function authFile(): string {
  return process.env['STRATA_AUTH_FILE'] || join(process.env['XDG_CONFIG_HOME'] || join(homedir(), '.config'), 'strata', 'auth.json');
}

function read(): AuthFile {
  try {
    return JSON.parse(readFileSync(authFile(), 'utf8')) as AuthFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`cannot read the credentials in ${authFile()}: ${(err as Error).message}`);
  }
}

export function credentialsFor(registry: string): Credentials | undefined {
  const auth = read().auths?.[registry]?.auth;
  if (auth === undefined) return undefined;
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon < 0 ? undefined : { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

export function saveCredentials(registry: string, c: Credentials | null): void {
  const file = authFile();
  const data = read();
  data.auths ??= {};
  if (c === null) delete data.auths[registry];
  else data.auths[registry] = { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') };
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
  // The mode a file is created with is filtered by the umask: set it outright.
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}
