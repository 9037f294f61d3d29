/** `strata pull`, `push`, `login` and `logout`: images to and from registries (registry/). */
import { RegistryClient, RegistryError } from '../../registry/client.js';
import { credentialsFor, saveCredentials } from '../../registry/credentials.js';
import { parsePlatform, pull } from '../../registry/pull.js';
import { push } from '../../registry/push.js';
import { formatReference, parseReference, ReferenceError, type Reference } from '../../registry/reference.js';
import { UserError } from '../errors.js';
import { layerProgress } from '../layer-progress.js';
import { withStore } from './images.js';

function reference(text: string): Reference {
  try {
    return parseReference(text);
  } catch (err) {
    if (err instanceof ReferenceError) throw new UserError(err.message);
    throw err;
  }
}

function client(ref: Reference, insecure: boolean): RegistryClient {
  return new RegistryClient(ref.registry, ref.repository, { insecure, credentials: credentialsFor(ref.registry) });
}

async function registryErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof RegistryError) throw new UserError(err.message);
    throw err;
  }
}

const log = (line: string) => process.stderr.write(line + '\n');

export async function pullImage(a: { root: string | undefined; reference: string; name?: string | undefined; insecure: boolean; platform?: string | undefined }): Promise<void> {
  const ref = reference(a.reference);
  await registryErrors(() =>
    withStore(a.root, async (_images, store) => {
      const progress = layerProgress();
      const image = await pull(store, ref, client(ref, a.insecure), {
        insecure: a.insecure,
        platform: parsePlatform(a.platform),
        ...(a.name !== undefined ? { name: a.name } : {}),
        progress,
      });
      progress.finish();
      log(`Status: downloaded ${a.name ?? formatReference(ref)}`);
      process.stdout.write(`${image.id}\n`);
    }),
  );
}

export async function pushImage(a: { root: string | undefined; image: string; destination?: string | undefined; insecure: boolean; compress: string }): Promise<void> {
  const ref = reference(a.destination ?? a.image);
  if (ref.digest !== undefined) throw new UserError(`${a.destination ?? a.image}: push to a tag, not a digest`);
  await registryErrors(() =>
    withStore(a.root, async (images, store) => {
      const image = await images.resolve(a.image);
      await push(store, image, client(ref, a.insecure), ref.tag ?? 'latest', { compress: a.compress as 'gzip' | 'none', log });
    }),
  );
}

async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin || !process.stdin.isTTY) {
    if (!fromStdin) throw new UserError('no terminal to ask for the password on: give --password-stdin');
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  }
  process.stderr.write('Password: ');
  process.stdin.setRawMode(true);
  let text = '';
  try {
    for await (const c of process.stdin) {
      for (const ch of (c as Buffer).toString('utf8')) {
        if (ch === '\r' || ch === '\n') return text;
        if (ch === '\u0003') throw new UserError('interrupted', 130);
        if (ch === '\u007f') text = text.slice(0, -1);
        else text += ch;
      }
    }
    return text;
  } finally {
    process.stdin.setRawMode(false);
    process.stdin.pause();
    process.stderr.write('\n');
  }
}

export async function login(a: { registry: string; username?: string | undefined; passwordStdin: boolean; insecure: boolean }): Promise<void> {
  if (!/^[a-zA-Z0-9.-]+(?::\d+)?$/.test(a.registry)) throw new UserError(`${a.registry}: give the registry as HOST[:PORT]`);
  if (a.username === undefined || a.username === '') throw new UserError('give the user name with -u');
  const password = await readPassword(a.passwordStdin);
  if (password === '') throw new UserError('the password is empty');
  const credentials = { username: a.username, password };
  await registryErrors(() => new RegistryClient(a.registry, 'login', { insecure: a.insecure, credentials }).verifyLogin());
  saveCredentials(a.registry, credentials);
  log('Login Succeeded');
}

export function logout(a: { registry: string }): void {
  saveCredentials(a.registry, null);
}
