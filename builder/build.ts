/**
 * strata build: a Dockerfile's stages run in order, each instruction a step that changes the
 * image config and, for RUN, COPY, ADD and a WORKDIR that creates its directory, adds one layer.
 * Every step goes through the build cache first (see cache.ts): a hit restores the step's result
 * without running anything, the first miss runs it and every later step of the stage.
 *
 * Output follows `docker build` (the classic builder): `Step N/M : INSTRUCTION`, ` ---> Using
 * cache`, ` ---> <id>`, RUN output as it comes, `Successfully built` and `Successfully tagged`.
 */
import { createHash } from 'node:crypto';
import { chmodSync, lchownSync, readFileSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { Writable } from 'node:stream';
import type { Digest } from '../driver/store/digest.js';
import type { ImageConfig, Images } from '../driver/store/images.js';
import type { LayerStore } from '../driver/store/store.js';
import { isWriteRefusal, StoreError } from '../driver/store/errors.js';
import { BuildCache, type StepResult } from './cache.js';
import { describeSources, hasWildcard, loadContext, matchSources, rootfsTree, type SourceTree } from './context.js';
import { copyInto, mkdirInRoot, type Ownership } from './copy.js';
import { DockerfileError } from './dockerfile/errors.js';
import { parseDockerfile, parseDuration, parseInstruction, type Command, type Dockerfile, type Instruction, type Stage } from './dockerfile/parse.js';
import { ExpansionError, ShellLex } from './dockerfile/shell-lex.js';
import { resolveInRoot } from './fs/in-root.js';
import { MountedRoot, type Root } from './fs/root.js';
import { containerConfig, emptyConfig, envGet, envSet, normalized, stateId, withStep, type ContainerConfig } from './image-config.js';
import { BuildLayers } from './layers.js';
import { FileDigests } from './file-digests.js';
import { keepDriverReady } from '../driver/launch.js';
import { goQuoteSlice, goSlice, healthcheckText } from './history-text.js';
import { runContainer } from '../runtime/runc.js';
import { ETC_FILE_PATHS, etcFiles } from '../runtime/etc-files.js';
import { resolveUser } from '../runtime/user.js';
import { addFromUrl, checksumError, isArchive, extractArchive } from './add.js';

export class BuildError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export interface BuildOptions {
  contextDir: string;
  dockerfile: string;
  tags: string[];
  buildArgs: Map<string, string>;
  target?: string;
  noCache: boolean;
  network: 'none' | 'host';
  sourceDateEpoch?: number;
  out: Writable;
}

/** What a stage has built so far. */
interface State {
  config: ImageConfig;
  /** Layer ids, bottom first. */
  layers: string[];
}

interface StageRun {
  stage: Stage;
  state: State;
  /** ARGs declared in the stage, with their values (undefined: declared without one). */
  args: Map<string, string | undefined>;
  /** Set once a step missed the cache: every later step of the stage runs. */
  missed: boolean;
  /** CMD was set in this stage (ENTRYPOINT then leaves it alone). */
  cmdSet: boolean;
}

const DEFAULT_SHELL = ['/bin/sh', '-c'];


function short(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

export class Builder {
  private readonly lex: ShellLex;
  private readonly layers: BuildLayers;
  private readonly cache: BuildCache;
  private readonly built = new Map<number, State>();
  private readonly usedBuildArgs = new Set<string>();
  private step = 0;
  interrupted = false;
  private steps = 0;
  private readonly globalArgs = new Map<string, string | undefined>();

  private constructor(
    private readonly df: Dockerfile,
    private readonly store: LayerStore,
    private readonly images: Images,
    private readonly opts: BuildOptions,
    private readonly context: SourceTree,
    private readonly digests: FileDigests,
  ) {
    this.lex = new ShellLex(df.directives.escape);
    this.layers = new BuildLayers(store, opts.sourceDateEpoch);
    this.cache = new BuildCache(store);
  }

  static async run(store: LayerStore, images: Images, opts: BuildOptions): Promise<Digest> {
    let text: string;
    try {
      text = readFileSync(opts.dockerfile, 'utf8');
    } catch (err) {
      throw new BuildError(`cannot read the Dockerfile ${opts.dockerfile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const df = parseDockerfile(text, posix.basename(opts.dockerfile));
    const context = loadContext(opts.contextDir);
    const digests = new FileDigests(store, opts.contextDir);
    const builder = new Builder(df, store, images, opts, context, digests);
    // An interrupt stops the build at the next step boundary, so that every step's cleanup (its
    // mount, its writable layer) runs; a second one ends the process at once.
    const onSignal = () => {
      if (builder.interrupted) process.exit(130);
      builder.interrupted = true;
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      return await builder.build();
    } catch (err) {
      // Whatever the interrupt made fail (a RUN killed mid-way) is reported as the interrupt.
      if (builder.interrupted) throw new BuildError('interrupted', 130);
      throw err;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // Only a cache (the next build hashes again without it): failing to keep it, on a full
      // disk say, must neither fail this build nor hide the error that stopped it.
      await digests.save().catch((err: unknown) => {
        if (!(err instanceof StoreError)) throw err;
      });
    }
  }

  private print(line: string): void {
    this.opts.out.write(line + '\n');
  }

  private fail(ins: Instruction, message: string, exitCode = 1): never {
    throw new BuildError(`${this.df.file}:${ins.line}: ${ins.kind}: ${message}`, exitCode);
  }

  private async build(): Promise<Digest> {
    for (const a of this.df.globalArgs) {
      for (const { name, value } of a.args) {
        const v = this.opts.buildArgs.get(name) ?? (value === undefined ? undefined : this.expand(a, value, (n) => this.globalArgs.get(n)));
        if (this.opts.buildArgs.has(name)) this.usedBuildArgs.add(name);
        this.globalArgs.set(name, v);
      }
    }
    const targetIndex = this.targetStage();
    const needed = this.neededStages(targetIndex);
    this.steps = [...needed].reduce((n, i) => n + 1 + this.df.stages[i]!.instructions.length, 0);
    // A RUN mounts its rootfs, and a driver takes longer to start than a few cache lookups: one
    // is started now, so that it is ready when the first RUN misses the cache. A build that hits
    // the cache throughout leaves it unused; it exits with this process.
    if ([...needed].some((i) => this.df.stages[i]!.instructions.some((ins) => ins.kind === 'RUN'))) keepDriverReady();
    let final: State | undefined;
    for (const i of [...needed].sort((a, b) => a - b)) {
      final = await this.buildStage(this.df.stages[i]!);
      this.built.set(i, final);
    }
    for (const name of this.opts.buildArgs.keys()) {
      if (!this.usedBuildArgs.has(name)) this.opts.out.write(`[Warning] One or more build-args [${name}] were not consumed\n`);
    }
    const configText = JSON.stringify(final!.config);
    const img = await this.images.add(configText, this.opts.tags);
    this.print(`Successfully built ${short(img.id)}`);
    for (const t of this.opts.tags) this.print(`Successfully tagged ${t}`);
    return img.id;
  }

  private targetStage(): number {
    if (this.opts.target === undefined) return this.df.stages.length - 1;
    const i = this.df.stages.findIndex((s) => s.name === this.opts.target!.toLowerCase());
    if (i < 0) throw new BuildError(`target stage "${this.opts.target}" could not be found`);
    return i;
  }

  /** The stage index a FROM or COPY --from names, if it names an earlier stage. */
  private stageRef(ref: string, before: number): number | undefined {
    const lower = ref.toLowerCase();
    const byName = this.df.stages.findIndex((s, i) => i < before && s.name === lower);
    if (byName >= 0) return byName;
    if (/^\d+$/.test(ref) && parseInt(ref, 10) < before) return parseInt(ref, 10);
    return undefined;
  }

  /** The target and the stages it needs (through FROM and COPY --from), and nothing else. */
  private neededStages(target: number): Set<number> {
    const need = new Set<number>();
    const visit = (i: number) => {
      if (need.has(i)) return;
      need.add(i);
      const s = this.df.stages[i]!;
      const refs = [s.from.image, ...s.instructions.filter((x) => x.kind === 'COPY' && x.from !== undefined).map((x) => (x as { from: string }).from)];
      for (const r of refs) {
        const word = this.tryExpand(r, (n) => this.globalArgs.get(n));
        const j = this.stageRef(word, i);
        if (j !== undefined) visit(j);
      }
    };
    visit(target);
    return need;
  }

  private tryExpand(text: string, lookup: (n: string) => string | undefined): string {
    try {
      return this.lex.word(text, lookup);
    } catch {
      return text;
    }
  }

  private expand(ins: Instruction, text: string, lookup: (n: string) => string | undefined): string {
    try {
      return this.lex.word(text, lookup);
    } catch (err) {
      if (err instanceof ExpansionError) this.fail(ins, err.message);
      throw err;
    }
  }

  private expandWords(ins: Instruction, text: string, lookup: (n: string) => string | undefined): string[] {
    try {
      return this.lex.words(text, lookup);
    } catch (err) {
      if (err instanceof ExpansionError) this.fail(ins, err.message);
      throw err;
    }
  }

  /** Variables as the stage's instructions see them: ENV first, then ARGs. */
  private lookup(run: StageRun): (name: string) => string | undefined {
    return (name) => envGet(containerConfig(run.state.config).Env, name) ?? run.args.get(name);
  }

  private announce(ins: Instruction, text = ins.original): void {
    this.step++;
    this.print(`Step ${this.step}/${this.steps} : ${text}`);
  }

  private async buildStage(stage: Stage): Promise<State> {
    this.announce(stage.from);
    const image = this.expand(stage.from, stage.from.image, (n) => this.globalArgs.get(n));
    let state: State;
    const ref = this.stageRef(image, stage.index);
    if (ref !== undefined) state = structuredClone(this.built.get(ref)!);
    else if (image === 'scratch') state = { config: emptyConfig(), layers: [] };
    else {
      try {
        const rec = await this.images.resolve(image);
        state = { config: JSON.parse(rec.config) as ImageConfig, layers: [...rec.layers] };
      } catch (err) {
        this.fail(stage.from, `${(err as Error).message} (strata builds from local images: import or load it first)`);
      }
    }
    this.print(` ---> ${image === 'scratch' ? 'scratch' : short(stateId(state.config))}`);
    state.config = normalized(state.config);
    const run: StageRun = { stage, state, args: new Map(), missed: this.opts.noCache, cmdSet: false };
    const triggers = containerConfig(state.config).OnBuild ?? [];
    if (triggers.length > 0) {
      containerConfig(run.state.config).OnBuild = null;
      this.print(`# Executing ${triggers.length} build trigger${triggers.length > 1 ? 's' : ''}`);
      for (const t of triggers) {
        const ins = parseInstruction(t, this.df.directives.escape, this.df.file, stage.from.line);
        await this.runStep(run, ins, false);
      }
    }
    for (const ins of stage.instructions) {
      this.announce(ins);
      await this.runStep(run, ins, true);
    }
    return run.state;
  }

  /** One instruction through the cache. */
  private async runStep(run: StageRun, ins: Instruction, printId: boolean): Promise<void> {
    if (this.interrupted) throw new BuildError('interrupted', 130);
    const plan = await this.plan(run, ins);
    const key = this.cache.key(stateId(run.state.config), plan.key);
    if (!run.missed) {
      const hit = await this.cache.lookup(key);
      if (hit !== undefined) {
        run.state = { config: JSON.parse(hit.config) as ImageConfig, layers: hit.layers };
        plan.onHit?.();
        this.print(' ---> Using cache');
        if (printId) this.print(` ---> ${short(stateId(run.state.config))}`);
        return;
      }
      run.missed = true;
    }
    // Steps that run mount one after another: from the first, keep drivers started ahead (a
    // build that only hits the cache starts none).
    keepDriverReady();
    const result = await plan.execute();
    run.state = result;
    await this.cache.save(key, { config: JSON.stringify(result.config), layers: result.layers } satisfies StepResult);
    if (printId) this.print(` ---> ${short(stateId(run.state.config))}`);
  }

  private now(): string {
    return this.opts.sourceDateEpoch !== undefined ? new Date(this.opts.sourceDateEpoch * 1000).toISOString() : new Date().toISOString();
  }

  /** A metadata-only step: the config changes, no layer. */
  private metaStep(run: StageRun, createdBy: string, change: (c: ContainerConfig, config: ImageConfig) => void): Plan {
    return {
      key: createdBy,
      execute: async () => {
        const config = withStep(run.state.config, createdBy, null, this.now());
        change(containerConfig(config), config);
        return { config, layers: run.state.layers };
      },
    };
  }

  private top(run: StageRun): string | null {
    return run.state.layers[run.state.layers.length - 1] ?? null;
  }

  /** What a step depends on (its cache key, beside the state before it) and how to run it. */
  private async plan(run: StageRun, ins: Instruction): Promise<Plan> {
    const lookup = this.lookup(run);
    // The classic builder records metadata steps as a no-op command of the current SHELL.
    const nop = (text: string) => `${this.shell(run).join(' ')} #(nop)  ${text}`;
    switch (ins.kind) {
      case 'FROM':
        this.fail(ins, 'FROM cannot be an ONBUILD trigger');
      // eslint-disable-next-line no-fallthrough
      case 'ARG': {
        const parts: string[] = [];
        for (const { name, value } of ins.args) {
          const dflt = value === undefined ? this.globalArgs.get(name) : this.expand(ins, value, lookup);
          const v = this.opts.buildArgs.get(name) ?? dflt;
          if (this.opts.buildArgs.has(name)) this.usedBuildArgs.add(name);
          run.args.set(name, v);
          parts.push(dflt === undefined || value === undefined ? name : `${name}=${dflt}`);
        }
        const plan = this.metaStep(run, nop(`ARG ${parts.join(' ')}`), () => undefined);
        // The values chosen count for the cache: a changed --build-arg is a different step.
        plan.key += '\0' + JSON.stringify([...run.args.entries()]);
        return plan;
      }
      case 'ENV': {
        const pairs = ins.pairs.map(([k, v]) => [this.expand(ins, k, lookup), this.expand(ins, v, lookup)] as const);
        return this.metaStep(run, nop(`ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`), (c) => {
          for (const [k, v] of pairs) c.Env = envSet(c.Env, k, v);
        });
      }
      case 'LABEL': {
        const pairs = ins.pairs.map(([k, v]) => [this.expand(ins, k, lookup), this.expand(ins, v, lookup)] as const);
        return this.metaStep(run, nop(`LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`), (c) => {
          c.Labels = { ...(c.Labels ?? {}) };
          for (const [k, v] of pairs) c.Labels[k] = v;
        });
      }
      case 'MAINTAINER':
        return this.metaStep(run, nop(`MAINTAINER ${ins.value}`), (_c, config) => {
          config['author'] = ins.value;
        });
      case 'USER': {
        const user = this.expand(ins, ins.value, lookup);
        return this.metaStep(run, nop(`USER ${user}`), (c) => {
          c.User = user;
        });
      }
      case 'STOPSIGNAL': {
        const sig = this.expand(ins, ins.value, lookup);
        if (!/^(SIG[A-Z0-9+-]+|\d+)$/.test(sig)) this.fail(ins, `invalid signal: ${sig}`);
        return this.metaStep(run, nop(`STOPSIGNAL ${sig}`), (c) => {
          c.StopSignal = sig;
        });
      }
      case 'EXPOSE': {
        const given = ins.ports.flatMap((p) => this.expandWords(ins, p, lookup));
        const ports = given.map((p) => (p.includes('/') ? p.toLowerCase() : `${p}/tcp`));
        for (const p of ports) if (!/^\d+(-\d+)?\/(tcp|udp|sctp)$/.test(p)) this.fail(ins, `invalid port: ${p}`);
        return this.metaStep(run, nop(`EXPOSE ${[...given].sort().join(' ')}`), (c) => {
          c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
          for (const p of ports) c.ExposedPorts[p] = {};
        });
      }
      case 'VOLUME': {
        const paths = ins.json ? ins.paths.map((p) => this.expand(ins, JSON.stringify(p), lookup)) : ins.paths.flatMap((p) => this.expandWords(ins, p, lookup));
        return this.metaStep(run, nop(`VOLUME ${goSlice(paths)}`), (c) => {
          c.Volumes = { ...(c.Volumes ?? {}) };
          for (const p of paths) c.Volumes[p] = {};
        });
      }
      case 'SHELL':
        return this.metaStep(run, nop(`SHELL ${goSlice(ins.args)}`), (c) => {
          c.Shell = ins.args;
        });
      case 'CMD':
      case 'ENTRYPOINT': {
        const args = this.commandArgs(run, ins.command);
        const plan = this.metaStep(run, nop(`${ins.kind} ${goQuoteSlice(args)}`), (c) => {
          if (ins.kind === 'CMD') c.Cmd = args;
          else {
            c.Entrypoint = args;
            if (!run.cmdSet) c.Cmd = null;
          }
        });
        if (ins.kind === 'CMD') run.cmdSet = true;
        return plan;
      }
      case 'HEALTHCHECK': {
        if (ins.test === null) {
          return this.metaStep(run, nop(healthcheckText(['NONE'])), (c) => {
            c.Healthcheck = { Test: ['NONE'] };
          });
        }
        const test = ins.test.form === 'exec' ? ['CMD', ...ins.test.args] : ['CMD-SHELL', ins.test.text];
        const ns = (d: string | undefined) => (d === undefined ? undefined : Math.round(parseDuration(d)! * 1e6));
        const hc: NonNullable<ContainerConfig['Healthcheck']> = { Test: test };
        const o = ins.options;
        if (o.interval !== undefined) hc.Interval = ns(o.interval)!;
        if (o.timeout !== undefined) hc.Timeout = ns(o.timeout)!;
        if (o.startPeriod !== undefined) hc.StartPeriod = ns(o.startPeriod)!;
        if (o.startInterval !== undefined) hc.StartInterval = ns(o.startInterval)!;
        if (o.retries !== undefined) hc.Retries = o.retries;
        return this.metaStep(run, nop(healthcheckText(test, hc.Interval, hc.Timeout, hc.StartPeriod, hc.Retries)), (c) => {
          c.Healthcheck = hc;
        });
      }
      case 'ONBUILD':
        return this.metaStep(run, nop(`ONBUILD ${ins.trigger}`), (c) => {
          c.OnBuild = [...(c.OnBuild ?? []), ins.trigger];
        });
      case 'WORKDIR':
        return this.planWorkdir(run, ins, this.expand(ins, ins.value, lookup));
      case 'RUN':
        return this.planRun(run, ins);
      case 'COPY':
      case 'ADD':
        return this.planCopy(run, ins);
    }
  }

  private shell(run: StageRun): string[] {
    return containerConfig(run.state.config).Shell ?? DEFAULT_SHELL;
  }

  private commandArgs(run: StageRun, cmd: Command): string[] {
    return cmd.form === 'exec' ? cmd.args : [...this.shell(run), cmd.text];
  }

  private planWorkdir(run: StageRun, ins: Instruction, value: string): Plan {
    const dir = posix.resolve('/', containerConfig(run.state.config).WorkingDir ?? '/', value);
    const createdBy = `${this.shell(run).join(' ')} #(nop) WORKDIR ${dir}`;
    return {
      key: createdBy,
      execute: async () => {
        // A layer only if the directory had to be made: otherwise the upper is dropped. Written
        // straight into the new upper, like a plain COPY: no mount.
        const layer = await this.layers.withUpper(this.top(run), async (root) => {
          const owner = this.userOwnership(root, containerConfig(run.state.config).User, ins);
          try {
            return root.mkdirp(dir, owner).created;
          } catch (err) {
            this.fail(ins, (err as Error).message);
          }
        });
        const config = withStep(run.state.config, createdBy, layer?.diffId ?? null, this.now());
        containerConfig(config).WorkingDir = dir;
        return { config, layers: layer === null ? run.state.layers : [...run.state.layers, layer.id] };
      },
    };
  }

  /** The owner new directories get under USER (Docker makes WORKDIR's directory the user's). */
  private userOwnership(rootfs: string | Root, user: string | undefined, ins: Instruction): Ownership {
    if (user === undefined || user === '') return { uid: 0, gid: 0 };
    try {
      const u = resolveUser(rootfs, user);
      return { uid: u.uid, gid: u.gid };
    } catch (err) {
      this.fail(ins, (err as Error).message);
    }
  }

  private planRun(run: StageRun, ins: Extract<Instruction, { kind: 'RUN' }>): Plan {
    const shell = this.shell(run);
    let args: string[];
    if (ins.command.form === 'exec') args = ins.command.args;
    else if (ins.heredocs.length === 1 && /^\d*<<-?["']?\w[\w.-]*["']?$/.test(ins.command.text.trim())) {
      // RUN <<EOF alone: the heredoc is the script.
      args = [...shell, ins.heredocs[0]!.body];
    } else {
      // The shell reads the heredocs itself, with the quoting they were written with.
      const docs = ins.heredocs.map((h) => `${h.body}${h.name}\n`).join('');
      args = [...shell, ins.heredocs.length === 0 ? ins.command.text : `${ins.command.text}\n${docs}`];
    }
    // Build args reach the command as environment, except those ENV already sets (the classic
    // builder's FilterAllowed), and they prefix created_by as `|N K=V ...`.
    const env0 = containerConfig(run.state.config).Env;
    const argEnv = [...run.args.entries()].filter(([k, v]) => v !== undefined && envGet(env0, k) === undefined).map(([k, v]) => `${k}=${v}`);
    const prefix = argEnv.length > 0 ? `|${argEnv.length} ${argEnv.join(' ')} ` : '';
    const createdBy = prefix + (ins.command.form === 'exec' ? args.join(' ') : [...shell, ins.command.text].join(' '));
    const network = ins.network === 'host' || (ins.network === undefined && this.opts.network === 'host') ? 'host' : 'none';
    return {
      key: `${createdBy}\0${JSON.stringify(args)}\0${network}`,
      execute: async () => {
        const cfg = containerConfig(run.state.config);
        let status = 0;
        let userError: string | null = null;
        const layer = await this.layers.withWorkspace(
          this.top(run),
          { init: true, files: ETC_FILE_PATHS },
          async (ws) => {
            let user;
            try {
              user = resolveUser(ws.rootfs, cfg.User ?? '');
            } catch (err) {
              userError = (err as Error).message;
              return false;
            }
            let env = [...(cfg.Env ?? [])];
            env.push(...argEnv);
            if (envGet(env, 'PATH') === undefined) env = envSet(env, 'PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
            if (envGet(env, 'HOME') === undefined) env.push(`HOME=${user.home}`);
            const cwd = cfg.WorkingDir || '/';
            mkdirInRoot(ws.rootfs, cwd);
            this.print(` ---> Running in ${ws.id.slice(0, 12)}`);
            status = await runContainer(
              { rootfs: ws.rootfs, process: { args, env, cwd, uid: user.uid, gid: user.gid, additionalGids: user.additionalGids }, hostname: ws.id.slice(0, 12), network },
              {
                bundleParent: `${this.store.root}/tmp`,
                id: `strata-build-${ws.id.slice(0, 16)}`,
                stdio: { stdout: this.opts.out, stderr: this.opts.out, stdin: 'ignore' },
                files: etcFiles(ws.id.slice(0, 12)),
              },
            );
            this.print(`Removing intermediate container ${ws.id.slice(0, 12)}`);
            return status === 0;
          },
        );
        if (userError !== null) this.fail(ins, userError);
        if (layer === null) {
          this.fail(ins, `The command '${args.join(' ')}' returned a non-zero code: ${status}`, status);
        }
        const config = withStep(run.state.config, createdBy, layer.diffId!, this.now());
        return { config, layers: [...run.state.layers, layer.id] };
      },
    };
  }

  private async planCopy(run: StageRun, ins: Extract<Instruction, { kind: 'COPY' | 'ADD' }>): Promise<Plan> {
    const lookup = this.lookup(run);
    const word = (w: string) => (ins.json ? this.expand(ins, JSON.stringify(w).replace(/^"|"$/g, ''), lookup) : this.expand(ins, w, lookup));
    const cfg = containerConfig(run.state.config);
    const destWord = word(ins.dest);
    const dest = posix.resolve('/', cfg.WorkingDir ?? '/', destWord);
    const chmod = ins.chmod === undefined ? undefined : this.expand(ins, ins.chmod, lookup);
    if (chmod !== undefined && !/^[0-7]{3,4}$/.test(chmod)) this.fail(ins, `--chmod=${chmod}: only octal modes are supported`);
    const chown = ins.chown === undefined ? undefined : this.expand(ins, ins.chown, lookup);
    const checksum = ins.kind === 'ADD' && ins.checksum !== undefined ? this.expand(ins, ins.checksum, lookup) : undefined;
    if (checksum !== undefined) {
      const why = checksumError(checksum);
      if (why !== null) this.fail(ins, why);
    }
    const heredocNames = new Set(ins.heredocs.map((h) => h.name));
    const patterns = ins.sources.map((s) => s.replace(/^<<-?["']?([\w.-]+)["']?$/, (_m, n: string) => (heredocNames.has(n) ? `\0heredoc:${n}` : _m)));
    const inline = patterns.filter((p) => p.startsWith('\0heredoc:')).map((p) => ins.heredocs.find((h) => h.name === p.slice(9))!);
    const files = patterns.filter((p) => !p.startsWith('\0heredoc:')).map(word);
    const urls = ins.kind === 'ADD' ? files.filter((f) => /^https?:\/\//.test(f)) : [];
    const local = files.filter((f) => !urls.includes(f));
    const destIsDir = destWord.endsWith('/') || ins.sources.length > 1 || local.some(hasWildcard);
    if (ins.sources.length > 1 && !destWord.endsWith('/')) {
      this.fail(ins, 'When using COPY with more than one source file, the destination must be a directory and end with a /');
    }

    // The tree the sources come from: another stage, an image, or the context.
    let fromTop: string | null = null;
    let fromIdentity = 'context';
    if (ins.kind === 'COPY' && ins.from !== undefined) {
      const from = this.expand(ins, ins.from, lookup);
      const ref = this.stageRef(from, run.stage.index);
      let st: State;
      if (ref !== undefined) {
        const b = this.built.get(ref);
        // Stages are chosen from FROM and --from lines with the global ARGs only.
        if (b === undefined) this.fail(ins, `--from=${from}: stage ${ref} was not built (name it without stage ARGs)`);
        st = b;
      } else {
        try {
          const rec = await this.images.resolve(from);
          st = { config: JSON.parse(rec.config) as ImageConfig, layers: rec.layers };
        } catch {
          this.fail(ins, `--from=${from}: no stage or image of that name`);
        }
      }
      fromTop = st.layers[st.layers.length - 1] ?? null;
      fromIdentity = `layers ${st.layers.join(',')}`;
    }
    const withTree = <T>(fn: (t: SourceTree) => Promise<T>): Promise<T> =>
      ins.kind === 'COPY' && ins.from !== undefined
        ? this.layers.withRootfs(fromTop, (root) => fn(rootfsTree(root, fromIdentity)))
        : fn(this.context);

    // Another stage's or an image's files are described by their layers, which never change: a
    // description made before is used without mounting them.
    const fromKey = ins.kind === 'COPY' && ins.from !== undefined ? `${fromIdentity}\0${JSON.stringify(local)}` : undefined;
    const described =
      (fromKey !== undefined ? await this.digests.described(fromKey, null) : undefined) ??
      (await withTree(async (t) => {
        try {
          const sources = local.length > 0 ? matchSources(t, local) : [];
          if (fromKey === undefined) return await describeSources(t, sources, this.digests);
          const d = await describeSources(t, sources);
          this.digests.remember(fromKey, null, d);
          return d;
        } catch (err) {
          this.fail(ins, (err as Error).message);
        }
      }));
    const docs = inline.map((h) => `${h.name}:${createHash('sha256').update(h.body).digest('hex')}`);
    const sourceKey = createHash('sha256').update(described.digest + '\n' + docs.join(',') + '\n' + urls.join(',')).digest('hex');
    // The classic builder's wording: file:, dir: or multi: and a digest of the sources.
    const kindWord = described.count + inline.length + urls.length > 1 ? 'multi' : described.dirs > 0 ? 'dir' : 'file';
    const createdBy = `${this.shell(run).join(' ')} #(nop) ${ins.kind} ${kindWord}:${sourceKey} in ${destWord} `;
    return {
      // Where the files go depends on destIsDir too (a wildcard matching one file copies into dest).
      key: `${createdBy}\0${chown ?? ''}\0${chmod ?? ''}\0${dest}\0${destIsDir}\0${checksum ?? ''}`,
      execute: async () => {
        const mode = chmod === undefined ? undefined : parseInt(chmod, 8);
        // A plain COPY writes straight into the new layer's upper directory: no mount needed.
        const direct = ins.kind === 'COPY' && inline.length === 0;
        const layer = await (direct
          ? this.layers.withUpper(this.top(run), async (root) => {
              const owner = chown === undefined ? undefined : this.ownerFromSpec(root, chown, ins);
              await withTree(async (t) => {
                const sources = matchSources(t, local);
                for (const src of sources) {
                  await copyInto(root, { tree: t, sources: [src], dest, destIsDir, ...(owner !== undefined ? { chown: owner } : {}), ...(mode !== undefined ? { chmod: mode } : {}) });
                }
              });
              return true;
            })
          : this.layers.withWorkspace(this.top(run), { init: false }, async (ws) => {
          const owner = chown === undefined ? undefined : this.ownerFromSpec(ws.rootfs, chown, ins);
          await withTree(async (t) => {
            const sources = local.length > 0 ? matchSources(t, local) : [];
            for (const src of sources) {
              const one = { tree: t, sources: [src], dest, destIsDir, ...(owner !== undefined ? { chown: owner } : {}), ...(mode !== undefined ? { chmod: mode } : {}) };
              if (ins.kind === 'ADD' && src.stat.isFile() && (await isArchive(src.host))) {
                await extractArchive(src.host, ws.rootfs, dest, owner);
              } else await copyInto(new MountedRoot(ws.rootfs), one);
            }
          });
          for (const h of inline) {
            const target = destIsDir ? posix.join(dest, h.name) : dest;
            mkdirInRoot(ws.rootfs, posix.dirname(target));
            const host = resolveInRoot(ws.rootfs, target);
            writeFileSync(host, h.body, { mode: mode ?? 0o644 });
            // chown before chmod: chown clears setuid and setgid.
            if (owner !== undefined) lchownSync(host, owner.uid, owner.gid);
            chmodSync(host, mode ?? 0o644);
          }
          for (const url of urls) await addFromUrl(url, ws.rootfs, dest, destIsDir, owner, mode, checksum, (m) => this.fail(ins, m));
          return true;
        })).catch((err: unknown) => {
          // What the sources or the destination refuse (a fifo, a file over a directory, an
          // unreadable file, a broken archive) is the step's error, with its line.
          if (err instanceof BuildError) throw err;
          const e = err as NodeJS.ErrnoException;
          // A write the store's disk refused (full, read-only) is not the source file's fault:
          // the whole message says so and names both ends of a copy.
          if (isWriteRefusal(e)) this.fail(ins, e.message);
          this.fail(ins, e.code !== undefined && e.path !== undefined ? `${e.path}: ${e.code}` : e.message);
        });
        const config = withStep(run.state.config, createdBy, layer!.diffId!, this.now());
        return { config, layers: [...run.state.layers, layer!.id] };
      },
    };
  }

  private ownerFromSpec(rootfs: string | Root, spec: string, ins: Instruction): Ownership {
    try {
      const u = resolveUser(rootfs, spec);
      return { uid: u.uid, gid: u.gid };
    } catch (err) {
      this.fail(ins, `--chown=${spec}: ${(err as Error).message}`);
    }
  }
}

interface Plan {
  /** The step as the cache sees it (besides the state before it). */
  key: string;
  execute(): Promise<State>;
  onHit?: () => void;
}

export { DockerfileError };
