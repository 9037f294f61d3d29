/**
 * Docker Distribution (Debian docker-registry) for tests: on 127.0.0.1 on a free port, storage
 * and config in the test's temp dir, optionally with htpasswd (Basic) authentication; stopped in
 * teardown. And a proxy in a process of its own (the CLI runs synchronously, blocking this one)
 * that spoils one blob: corrupts a byte, cuts the connection halfway, or stalls halfway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Teardown } from './mounts.js';
import { must } from './run.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as { port: number }).port;
      probe.close(() => resolve(p));
    });
  });
}

async function stopOnTeardown(t: Teardown, child: ChildProcess): Promise<void> {
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  });
}

async function waitFor(url: string, okStatuses: number[]): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(url);
      if (okStatuses.includes(res.status)) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

/** Start a registry; its host:port. With `users`, htpasswd authentication for them. */
export async function startRegistry(t: Teardown, dir: string, users?: Record<string, string>): Promise<string> {
  const port = await freePort();
  let auth = '';
  if (users !== undefined) {
    const lines = Object.entries(users).map(([u, p]) => must(`htpasswd -Bbn ${u} ${p}`).trim());
    writeFileSync(join(dir, 'htpasswd'), lines.join('\n') + '\n');
    auth = `auth:\n  htpasswd:\n    realm: strata-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  writeFileSync(
    join(dir, 'registry.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'registry-data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`,
  );
  const child = spawn('docker-registry', ['serve', join(dir, 'registry.yml')], { stdio: 'ignore' });
  await stopOnTeardown(t, child);
  await waitFor(`http://127.0.0.1:${port}/v2/`, [200, 401]);
  return `127.0.0.1:${port}`;
}

/**
 * A proxy to `upstream` that spoils the blob `digest`: 'corrupt' flips one byte of it, 'cut'
 * sends half of it and drops the connection, 'stall' sends half and nothing more. Everything
 * else passes through. Its host:port.
 */
export async function startSpoilingProxy(t: Teardown, upstream: string, digest: string, how: 'corrupt' | 'cut' | 'stall'): Promise<string> {
  const port = await freePort();
  const script = `
    const http = require('node:http');
    const [up, digest, how, port] = process.argv.slice(1);
    http.createServer((req, res) => {
      const p = http.request({ host: up.split(':')[0], port: Number(up.split(':')[1]), path: req.url, method: req.method, headers: req.headers }, (r) => {
        const spoil = req.method === 'GET' && req.url.endsWith('/blobs/' + digest) && r.statusCode === 200;
        if (!spoil) { res.writeHead(r.statusCode, r.headers); r.pipe(res); return; }
        const chunks = [];
        r.on('data', (c) => chunks.push(c));
        r.on('end', () => {
          const body = Buffer.concat(chunks);
          res.writeHead(200, r.headers);
          if (how === 'corrupt') { body[body.length >> 1] ^= 0xff; res.end(body); }
          else if (how === 'cut') { res.write(body.subarray(0, body.length >> 1)); setTimeout(() => res.socket.destroy(), 50); }
          else res.write(body.subarray(0, body.length >> 1));
        });
      });
      req.pipe(p);
    }).listen(Number(port), '127.0.0.1');
  `;
  const child = spawn(process.execPath, ['-e', script, upstream, digest, how, String(port)], { stdio: 'ignore' });
  await stopOnTeardown(t, child);
  await waitFor(`http://127.0.0.1:${port}/v2/`, [200, 401]);
  return `127.0.0.1:${port}`;
}
