/**
 * Docker Distribution (Debian docker-registry) for tests: on 127.0.0.1 on a free port, storage
 * and config in the test's temp dir, optionally with htpasswd (Basic) authentication; stopped in
 * teardown. And a proxy in a process of its own (the CLI runs synchronously, blocking this one)
 * that spoils one blob: corrupts a byte, cuts the connection halfway, or stalls halfway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Teardown } from './mounts.js';
import { freePort } from './ports.js';
import { must } from './run.js';

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
 * sends half of it and drops the connection, 'stall' sends half and nothing more;
 * 'stall-second-upload' never answers the second blob upload (PATCH) of a push. Everything else
 * passes through. Its host:port.
 */
export async function startSpoilingProxy(t: Teardown, upstream: string, digest: string, how: 'corrupt' | 'cut' | 'stall' | 'stall-second-upload'): Promise<string> {
  const port = await freePort();
  const script = `
    const http = require('node:http');
    const [up, digest, how, port] = process.argv.slice(1);
    let uploads = 0;
    http.createServer((req, res) => {
      // The second layer upload is taken in and never answered.
      if (how === 'stall-second-upload' && req.method === 'PATCH' && ++uploads === 2) { req.resume(); return; }
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

/**
 * A registry that wants Bearer tokens, and the token service it names: `users` (Basic) get what
 * they ask for, anyone else nothing (401). Tokens are JWTs signed RS256 with a certificate the
 * registry trusts (x5c), as Distribution's token auth verifies them. The registry's host:port.
 */
export async function startTokenRegistry(t: Teardown, dir: string, users: Record<string, string>): Promise<string> {
  must(`cd ${dir} && openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=strata-token -days 1 -keyout token-key.pem -out token-cert.pem 2>/dev/null`);
  const tokenPort = await freePort();
  const script = `
    const crypto = require('node:crypto');
    const fs = require('node:fs');
    const [port, usersJson, dir] = process.argv.slice(1);
    const users = JSON.parse(usersJson);
    const key = fs.readFileSync(dir + '/token-key.pem');
    const der = new crypto.X509Certificate(fs.readFileSync(dir + '/token-cert.pem')).raw.toString('base64');
    const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
    require('node:http').createServer((req, res) => {
      const url = new URL(req.url, 'http://x');
      const auth = req.headers.authorization ?? '';
      const [user, pass] = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString().split(':') : [];
      if (user === undefined || users[user] !== pass) { res.writeHead(401); res.end('{}'); return; }
      const access = url.searchParams.getAll('scope').map((s) => { const [type, name, actions] = s.split(':'); return { type, name, actions: actions.split(',') }; });
      const now = Math.floor(Date.now() / 1000);
      const head = b64({ typ: 'JWT', alg: 'RS256', x5c: [der] });
      const claims = b64({ iss: 'strata-test-issuer', sub: user, aud: 'strata-test', exp: now + 300, nbf: now - 10, iat: now, jti: crypto.randomUUID(), access });
      const sig = crypto.sign('sha256', Buffer.from(head + '.' + claims), key).toString('base64url');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token: head + '.' + claims + '.' + sig, expires_in: 300 }));
    }).listen(Number(port), '127.0.0.1');
  `;
  const child = spawn(process.execPath, ['-e', script, String(tokenPort), JSON.stringify(users), dir], { stdio: 'ignore' });
  await stopOnTeardown(t, child);
  await waitFor(`http://127.0.0.1:${tokenPort}/token`, [401]);
  const port = await freePort();
  writeFileSync(
    join(dir, 'registry.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'registry-data')}\nhttp:\n  addr: 127.0.0.1:${port}\n` +
      `auth:\n  token:\n    realm: http://127.0.0.1:${tokenPort}/token\n    service: strata-test\n    issuer: strata-test-issuer\n    rootcertbundle: ${join(dir, 'token-cert.pem')}\n`,
  );
  const reg = spawn('docker-registry', ['serve', join(dir, 'registry.yml')], { stdio: 'ignore' });
  await stopOnTeardown(t, reg);
  await waitFor(`http://127.0.0.1:${port}/v2/`, [401]);
  return `127.0.0.1:${port}`;
}
