/**
 * strata build: a Dockerfile's image, built on the store through the builder. Errors of the
 * Dockerfile, the context or a step become one message and exit code 1, as with docker build.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Builder, BuildError } from '../../builder/build.js';
import { DockerfileError } from '../../builder/dockerfile/errors.js';
import { ContextError } from '../../builder/context.js';
import { parseTag } from '../../driver/store/images.js';
import { UserError } from '../errors.js';
import { withStore } from './images.js';

export interface BuildArgs {
  root: string | undefined;
  context: string;
  file: string | undefined;
  tags: string[];
  buildArgs: string[];
  target: string | undefined;
  noCache: boolean;
  network: string;
}

export async function build(a: BuildArgs): Promise<void> {
  const contextDir = resolve(a.context);
  if (!existsSync(contextDir)) throw new UserError(`unable to prepare context: path "${a.context}" not found`);
  const dockerfile = a.file === undefined ? join(contextDir, 'Dockerfile') : resolve(a.file);
  const tags = a.tags.map((t) => {
    try {
      return parseTag(t);
    } catch (err) {
      throw new UserError((err as Error).message);
    }
  });
  const buildArgs = new Map<string, string>();
  for (const kv of a.buildArgs) {
    const eq = kv.indexOf('=');
    // Docker: --build-arg NAME takes the value from the environment.
    if (eq < 0) {
      const v = process.env[kv];
      if (v !== undefined) buildArgs.set(kv, v);
    } else buildArgs.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  if (a.network !== 'none' && a.network !== 'host' && a.network !== 'default') throw new UserError(`--network must be none or host, not ${a.network}`);
  const sde = process.env['SOURCE_DATE_EPOCH'];
  if (sde !== undefined && !/^\d+$/.test(sde)) throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not ${sde}`);
  await withStore(a.root, async (images, store) => {
    try {
      await Builder.run(store, images, {
        contextDir,
        dockerfile,
        tags,
        buildArgs,
        ...(a.target !== undefined ? { target: a.target } : {}),
        noCache: a.noCache,
        network: a.network === 'host' ? 'host' : 'none',
        ...(sde !== undefined ? { sourceDateEpoch: parseInt(sde, 10) } : {}),
        out: process.stdout,
      });
    } catch (err) {
      if (err instanceof BuildError) throw new UserError(err.message, err.exitCode === 130 ? 130 : 1);
      if (err instanceof DockerfileError || err instanceof ContextError) throw new UserError(err.message);
      throw err;
    }
  });
}
