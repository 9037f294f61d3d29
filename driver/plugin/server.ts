/**
 * The GraphDriver plugin server: Docker's plugin protocol (HTTP/1.1 on a unix socket, every call
 * a POST /<Method>, JSON in and out, `Err` for failures) on a GraphDriver. Diff answers with the
 * raw tar; ApplyDiff reads a raw tar body (dockerd sends it chunked), its layer named in the query.
 *
 * The mounts are served by driver processes of their own, so they outlive this server: killed
 * and restarted while dockerd runs, it finds them in the store's records, and dockerd, which
 * retries a call whose connection failed for 30 s, carries on.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isLayerId } from '../store/store.js';
import type { GraphDriver } from './graph-driver.js';

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';
/** No JSON request of the protocol comes near this. */
const MAX_JSON_BYTES = 1 << 20;

export class PluginRequestError extends Error {}

interface Request {
  ID?: string;
  Parent?: string;
  Home?: string;
}

type Handler = (g: GraphDriver, body: Request, req: IncomingMessage, res: ServerResponse) => Promise<Record<string, unknown> | null>;

/** Every id dockerd names is checked before it reaches the store, whose paths are built from it. */
function layerId(value: string, what: string): string {
  if (!isLayerId(value)) throw new PluginRequestError(`${what} ${JSON.stringify(value)} is not a layer id`);
  return value;
}

function id(body: Request): string {
  if (typeof body.ID !== 'string' || body.ID === '') throw new PluginRequestError('the request names no layer (ID)');
  return layerId(body.ID, 'ID');
}

function parent(body: Request): string {
  return typeof body.Parent === 'string' && body.Parent !== '' ? layerId(body.Parent, 'Parent') : '';
}

/** Every method, by the path dockerd posts to. A null result means the handler answered itself. */
const HANDLERS: Record<string, Handler> = {
  '/Plugin.Activate': async () => ({ Implements: ['GraphDriver'] }),
  '/GraphDriver.Init': async (g) => {
    await g.init();
    return {};
  },
  '/GraphDriver.Capabilities': async () => ({ Capabilities: { ReproducesExactDiffs: true } }),
  '/GraphDriver.Create': async (g, b) => {
    await g.create(id(b), parent(b));
    return {};
  },
  '/GraphDriver.CreateReadWrite': async (g, b) => {
    await g.createReadWrite(id(b), parent(b));
    return {};
  },
  '/GraphDriver.Remove': async (g, b) => {
    await g.remove(id(b));
    return {};
  },
  '/GraphDriver.Get': async (g, b) => ({ Dir: await g.get(id(b)) }),
  '/GraphDriver.Put': async (g, b) => {
    await g.put(id(b));
    return {};
  },
  '/GraphDriver.Exists': async (g, b) => ({ Exists: await g.exists(id(b)) }),
  '/GraphDriver.Status': async (g) => ({ Status: await g.status() }),
  '/GraphDriver.GetMetadata': async (g, b) => ({ Metadata: await g.metadata(id(b)) }),
  // The mounts are dockerd's Gets: they stay until their Puts, or until the next Init.
  '/GraphDriver.Cleanup': async () => ({}),
  '/GraphDriver.Diff': async (g, b, _req, res) => {
    const tar = await g.diff(id(b), parent(b));
    res.writeHead(200, { 'Content-Type': 'application/x-tar' });
    await pipeline(tar, res);
    return null;
  },
  '/GraphDriver.Changes': async (g, b) => ({ Changes: await g.changes(id(b), parent(b)) }),
  '/GraphDriver.DiffSize': async (g, b) => ({ Size: await g.diffSize(id(b), parent(b)) }),
};

async function handleApplyDiff(g: GraphDriver, req: IncomingMessage): Promise<Record<string, unknown>> {
  const query = new URL(req.url ?? '', 'http://plugin').searchParams;
  const layer = query.get('id') ?? '';
  if (layer === '') throw new PluginRequestError('ApplyDiff names no layer (?id=)');
  const par = query.get('parent') ?? '';
  return { Size: await g.applyDiff(layerId(layer, 'id'), par === '' ? '' : layerId(par, 'parent'), req) };
}

async function readJson(req: IncomingMessage): Promise<Request> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_JSON_BYTES) throw new PluginRequestError(`request body over ${MAX_JSON_BYTES} bytes`);
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '' || text === 'null') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PluginRequestError('the request body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new PluginRequestError('the request body is not a JSON object');
  return parsed as Request;
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export interface PluginServer {
  /** Stop taking calls, finish those running, remove the socket. */
  close(): Promise<void>;
}

/** Serve `g` on the unix socket `socket`, refusing one another server still answers on. */
export async function servePlugin(g: GraphDriver, socket: string, log: (line: string) => void): Promise<PluginServer> {
  if (existsSync(socket)) {
    if (await answers(socket)) throw new PluginRequestError(`${socket} is served by another process`);
    rmSync(socket, { force: true });
  }
  mkdirSync(dirname(socket), { recursive: true, mode: 0o755 });
  // A layer's tar may take longer than Node's default five minutes to arrive.
  const server: Server = createServer({ requestTimeout: 0 }, (req, res) => {
    const path = new URL(req.url ?? '', 'http://plugin').pathname;
    const started = Date.now();
    const done = (err?: unknown) => {
      const ms = Date.now() - started;
      if (err === undefined) log(`${path} ${ms} ms`);
      else log(`${path} failed after ${ms} ms: ${(err as Error).message}`);
    };
    const handle = async (): Promise<void> => {
      if (req.method !== 'POST') {
        reply(res, 405, { Err: `${req.method ?? ''} ${path}: plugin calls are POSTs` });
        return;
      }
      if (path === '/GraphDriver.ApplyDiff') {
        reply(res, 200, await handleApplyDiff(g, req));
        return;
      }
      const handler = HANDLERS[path];
      if (handler === undefined) {
        req.resume();
        reply(res, 404, { Err: `${path}: not a GraphDriver call` });
        return;
      }
      const body = await readJson(req);
      const result = await handler(g, body, req, res);
      if (result !== null) reply(res, 200, result);
    };
    handle().then(
      () => done(),
      (err: unknown) => {
        done(err);
        // A Diff that failed mid-stream can only be cut short: dockerd sees a broken tar.
        if (res.headersSent) res.destroy(err as Error);
        else reply(res, 500, { Err: (err as Error).message });
        // An ApplyDiff refused before its body was read: the rest of the body is not wanted.
        if (!req.readableEnded) req.resume();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          rmSync(socket, { force: true });
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}

/** Whether a process accepts connections on the unix socket `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
