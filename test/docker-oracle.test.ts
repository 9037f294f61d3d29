/**
 * Docker as the oracle for strata build: a private dockerd 20.10 (Debian docker.io, classic
 * builder) builds the same Dockerfile on the same busybox base; the layers must hold the same
 * entries (names, types, modes, owners, sizes, link targets; times aside) and be as many, the
 * history must have the same shape, and an image strata saves must load and run in Docker.
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { archiveLayers, DOCKER, startDockerd } from './lib/docker.js';
import { tempDir } from './lib/mounts.js';
import { must, run, strata, ROOT } from './lib/run.js';

if (!existsSync(DOCKER) || run('which', ['dockerd']).code !== 0) {
  t.fail('docker.io is not installed (native-deps/apt.sh installs it)');
} else {
  t.test('docker build and strata build agree', async (t) => {
    const base = tempDir(t, 'strata-docker-');
    const { docker } = await startDockerd(t, base);

    const root = join(base, 'store');
    const s = (...args: string[]) => strata(['--root', root, ...args]);
    must(`bash ${ROOT}native-deps/busybox-rootfs.sh ${base}/busybox.tar`);
    t.equal(docker('import', `${base}/busybox.tar`, 'busybox:latest').code, 0);
    t.equal(s('import', `${base}/busybox.tar`, 'busybox:latest').code, 0);

    const ctx = join(base, 'ctx');
    mkdirSync(join(ctx, 'src/deep'), { recursive: true });
    writeFileSync(join(ctx, 'src/a.txt'), 'alpha\n');
    writeFileSync(join(ctx, 'src/deep/b.txt'), 'beta\n');
    writeFileSync(join(ctx, 'tool.sh'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
    writeFileSync(join(ctx, 'Dockerfile'), [
      'FROM busybox AS build',
      'RUN mkdir -p /out && echo artifact > /out/file',
      'FROM busybox',
      'ARG LEVEL=3',
      'ENV APP=/srv/app MODE=test',
      'WORKDIR $APP',
      'COPY src/ ./src/',
      'COPY tool.sh /usr/local/bin/',
      'COPY --from=build /out/file /srv/artifact',
      'RUN rm /etc/issue && rm -r /home/user && mkdir -p /home/user && echo level=$LEVEL > /home/user/level && chown 1000:1000 /home/user/level',
      'RUN ln -s /srv/app/src/a.txt /srv/link && ln /srv/artifact /srv/hardlink',
      'USER user',
      'CMD ["sh", "-c", "cat /srv/app/src/a.txt"]',
      '',
    ].join('\n'));

    const db = docker('build', '--network', 'none', '-t', 'oracle:1', ctx);
    t.equal(db.code, 0, `docker build (${db.stderr.slice(-500)})`);
    const sb = s('build', '-t', 'oracle:1', ctx);
    t.equal(sb.code, 0, `strata build (${sb.stderr})`);

    const dInspect = JSON.parse(docker('inspect', 'oracle:1').stdout)[0] as { RootFS: { Layers: string[] }; Config: Record<string, unknown> };
    const sInspect = JSON.parse(s('inspect', 'oracle:1').stdout) as { Config: { rootfs: { diff_ids: string[] }; config: Record<string, unknown>; history: Array<{ created_by: string; empty_layer?: boolean }> } };
    t.equal(sInspect.Config.rootfs.diff_ids.length, dInspect.RootFS.Layers.length, 'the same number of layers');
    for (const k of ['Env', 'Cmd', 'WorkingDir', 'User', 'Entrypoint', 'Volumes', 'OnBuild', 'Labels']) {
      t.same(sInspect.Config.config[k], dInspect.Config[k], `config ${k}`);
    }
    // One line per entry, the imported base's empty: only the final newline goes.
    const dh = docker('history', '--no-trunc', '--format', '{{.CreatedBy}}', 'oracle:1').stdout.replace(/\n$/, '').split('\n').reverse();
    const sh2 = sInspect.Config.history.map((h) => h.created_by);
    t.equal(sh2.length, dh.length, 'as many history entries');
    // COPY's digests are Docker's own content hash; everything else reads the same.
    const norm = (x: string) => x.replace(/(file|dir|multi):[0-9a-f]+/, '$1:#').replace(/^strata import$/, '');
    t.same(sh2.slice(1).map(norm), dh.slice(1).map(norm), 'history created_by, in order');

    // Layer by layer, the same entries.
    t.equal(docker('save', 'oracle:1', '-o', `${base}/docker.tar`).code, 0);
    t.equal(s('save', 'oracle:1', '-o', `${base}/strata.tar`).code, 0);
    const dLayers = await archiveLayers(readFileSync(`${base}/docker.tar`));
    const sLayers = await archiveLayers(readFileSync(`${base}/strata.tar`));
    t.equal(sLayers.length, dLayers.length);
    for (let i = 1; i < Math.min(sLayers.length, dLayers.length); i++) t.same(sLayers[i], dLayers[i], `layer ${i}: the same entries`);

    // strata's image runs in Docker.
    t.equal(docker('rmi', 'oracle:1').code, 0);
    t.equal(docker('load', '-i', `${base}/strata.tar`).code, 0, 'docker load reads strata save');
    const r = docker('run', '--rm', '--network', 'none', 'oracle:1');
    t.equal(r.stdout, 'alpha\n', `docker runs strata's image (${r.stderr})`);
    const who = docker('run', '--rm', '--network', 'none', 'oracle:1', 'sh', '-c', 'id -u; cat /home/user/level; ls /etc/issue 2>&1 || true');
    t.match(who.stdout, /^1000\nlevel=3\n.*No such file/s);
  });
}
