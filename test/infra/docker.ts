/**
 * Docker side of the infra checks: the Dockerfile parsed by dockerfile-ast, the ignore file
 * matched by @balena/dockerignore (Docker's own matching rules), a build context that can be the
 * repository or the repository with some files replaced (for negative tests), and a tracer that
 * follows a path in the final image back through COPY / COPY --from to the build context or to
 * the build stage that produced it.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import ignoreModule from '@balena/dockerignore';
import { DockerfileParser, type Instruction, type JSONInstruction, type ModifiableInstruction } from 'dockerfile-ast';

// a CommonJS module whose types declare a default export: the function is the module or its default
type IgnoreFactory = () => { add(patterns: string): { ignores(path: string): boolean } };
const ignore = ((ignoreModule as unknown as { default?: IgnoreFactory }).default ?? ignoreModule) as unknown as IgnoreFactory;

// ------------------------------------------------------------------------------------------
// The build context
// ------------------------------------------------------------------------------------------

/** The build context (the repository root), with optional replaced or added files for negative tests. */
export class Context {
  constructor(
    readonly root: string,
    private readonly overrides: Record<string, string | null> = {},
    /** the ignore file in effect: what it excludes is not in the context */
    readonly ignore?: IgnoreFile,
  ) {}
  /** The same context with files replaced (a string) or removed (null). */
  with(overrides: Record<string, string | null>): Context {
    return new Context(this.root, { ...this.overrides, ...overrides }, this.ignore);
  }
  withIgnore(ignore: IgnoreFile | undefined): Context {
    return new Context(this.root, this.overrides, ignore);
  }
  /** The path is sent to the builder: it exists and the ignore file does not exclude it. */
  sent = (p: string) => this.exists(p) && !(this.ignore?.ignored(p) ?? false);
  private real = (p: string) => join(this.root, p);
  isFile(p: string): boolean {
    if (p in this.overrides) return this.overrides[p] !== null;
    return existsSync(this.real(p)) && statSync(this.real(p)).isFile();
  }
  isDir(p: string): boolean {
    if (p === '') return true;
    if (Object.keys(this.overrides).some((o) => o.startsWith(`${p}/`) && this.overrides[o] !== null)) return true;
    return existsSync(this.real(p)) && statSync(this.real(p)).isDirectory();
  }
  exists = (p: string) => this.isFile(p) || this.isDir(p);
  read(p: string): string {
    const o = this.overrides[p];
    if (o === null) throw new Error(`${p} does not exist`);
    return o ?? readFileSync(this.real(p), 'utf8');
  }
  /** Every file under `dir` (relative to the root), not descending into directories `prune` rejects. */
  files(dir = '', prune: (p: string) => boolean = () => false): string[] {
    const out = new Set<string>();
    const walk = (d: string) => {
      const abs = this.real(d);
      if (!existsSync(abs) || !statSync(abs).isDirectory()) return;
      for (const name of readdirSync(abs)) {
        const p = d ? `${d}/${name}` : name;
        if (statSync(this.real(p)).isDirectory()) {
          if (!prune(p)) walk(p);
        } else out.add(p);
      }
    };
    if (this.isFile(dir) && dir !== '') out.add(dir);
    else walk(dir);
    for (const [p, v] of Object.entries(this.overrides)) {
      if (v === null) out.delete(p);
      else if (dir === '' || p === dir || p.startsWith(`${dir}/`)) out.add(p);
    }
    return [...out].sort();
  }
}

// ------------------------------------------------------------------------------------------
// The ignore file
// ------------------------------------------------------------------------------------------

export interface IgnoreFile {
  /** path of the ignore file in the context */
  path: string;
  ignored(path: string): boolean;
  /** there are "!" exceptions: an ignored directory may still have files in the context */
  hasExceptions: boolean;
}

/**
 * The ignore file BuildKit uses for a Dockerfile: `<Dockerfile>.dockerignore` next to it, else
 * `.dockerignore` at the context root; undefined when there is none.
 */
export function findIgnoreFile(ctx: Context, dockerfilePath: string): IgnoreFile | undefined {
  const candidates = [`${dockerfilePath}.dockerignore`, '.dockerignore'];
  const path = candidates.find((p) => ctx.isFile(p));
  return path === undefined ? undefined : parseIgnoreFile(ctx.read(path), path);
}
export function parseIgnoreFile(text: string, path = '.dockerignore'): IgnoreFile {
  const ig = ignore().add(text);
  const hasExceptions = text.split('\n').some((l) => l.trim().startsWith('!'));
  return { path, hasExceptions, ignored: (p: string) => p !== '' && ig.ignores(p) };
}

// ------------------------------------------------------------------------------------------
// The Dockerfile
// ------------------------------------------------------------------------------------------

export interface Copy {
  ins: Instruction;
  /** --from: a stage name (or an image) */
  from?: string;
  flags: Record<string, string | null>;
  sources: string[];
  /** destination, absolute (resolved against the WORKDIR in effect) */
  dest: string;
  /** the destination is a directory (trailing slash, several sources, or a directory source) */
  destIsDir: boolean;
}

export interface Stage {
  index: number;
  name?: string;
  /** the FROM image with build arguments expanded */
  image: string;
  /** the earlier stage this one is built FROM, if any */
  parent?: Stage;
  instructions: Instruction[];
}

export interface DockerModel {
  path: string;
  stages: Stage[];
  final: Stage;
}

const flagsOf = (ins: Instruction): Record<string, string | null> =>
  Object.fromEntries(('getFlags' in ins ? (ins as ModifiableInstruction).getFlags() : []).map((f) => [f.getName(), f.getValue()]));

const isJson = (ins: Instruction) => 'getJSONStrings' in ins && (ins as JSONInstruction).getOpeningBracket() !== null;

/** The words of an instruction's arguments (exec form JSON strings unquoted), without flags. */
export function words(ins: Instruction): string[] {
  if (isJson(ins)) return (ins as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue());
  return ins.getArguments().map((a) => a.getValue());
}

export function parseDockerfile(text: string, path = 'Dockerfile'): DockerModel {
  const df = DockerfileParser.parse(text);
  const stages: Stage[] = [];
  for (const ins of df.getInstructions()) {
    const kw = ins.getKeyword();
    if (kw === 'FROM') {
      const args = ins.getExpandedArguments().map((a) => a.getValue());
      const image = args[0] ?? '';
      const name = args.length >= 3 && args[1].toUpperCase() === 'AS' ? args[2] : undefined;
      const parent = stages.find((s) => s.name !== undefined && s.name === image);
      stages.push({ index: stages.length, name, image, parent, instructions: [] });
    } else if (stages.length) {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  if (!stages.length) throw new Error(`${path}: no FROM`);
  return { path, stages, final: stages.at(-1)! };
}

export const stageByName = (m: DockerModel, name: string) => m.stages.find((s) => s.name === name || String(s.index) === name);
export const instructionsOf = (s: Stage, keyword: string) => s.instructions.filter((i) => i.getKeyword() === keyword);
/** The shell text of every RUN of a stage (flags such as --mount left out). */
export const runTexts = (s: Stage) => instructionsOf(s, 'RUN').map((i) => words(i).join(' '));

/** ENV of a stage, with what it inherits from a parent stage. */
export function stageEnv(s: Stage): Record<string, string> {
  const env: Record<string, string> = s.parent ? stageEnv(s.parent) : {};
  for (const ins of instructionsOf(s, 'ENV')) {
    for (const p of (ins as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] }).getProperties())
      env[p.getName()] = p.getValue() ?? '';
  }
  return env;
}
/** The USER a stage runs as (inherited from a parent stage), undefined: the base image's (root for node:*). */
export function stageUser(s: Stage): string | undefined {
  const own = instructionsOf(s, 'USER').at(-1);
  return own ? words(own).join(' ') : s.parent ? stageUser(s.parent) : undefined;
}

/** The WORKDIR in effect before instruction `i` of a stage (inherited from a parent stage). */
export function workdirAt(s: Stage, i = s.instructions.length): string {
  let wd = s.parent ? workdirAt(s.parent) : '/';
  for (const ins of s.instructions.slice(0, i)) if (ins.getKeyword() === 'WORKDIR') wd = posix.resolve(wd, words(ins).join(' '));
  return wd;
}

/** The COPY and ADD instructions of a stage, with absolute destinations. */
export function copiesOf(s: Stage, ctx?: Context): Copy[] {
  const out: Copy[] = [];
  s.instructions.forEach((ins, i) => {
    const kw = ins.getKeyword();
    if (kw !== 'COPY' && kw !== 'ADD') return;
    const flags = flagsOf(ins);
    const w = words(ins);
    const sources = w.slice(0, -1).map((x) => (x === '.' || x === './' ? '' : x.replace(/^\.\//, '').replace(/(.)\/+$/, '$1')));
    const rawDest = w.at(-1)!;
    const dest = posix.resolve(workdirAt(s, i), rawDest);
    const from = flags.from ?? undefined;
    const destIsDir =
      rawDest.endsWith('/') ||
      rawDest === '.' ||
      sources.length > 1 ||
      sources.some((x) => /[*?[]/.test(x)) ||
      (!from && !!ctx && sources.every((x) => ctx.isDir(x)));
    out.push({ ins, from, flags, sources, dest, destIsDir });
  });
  return out;
}

/** Context paths a COPY source names (globs expanded); [] when it matches nothing. */
export function expandSource(ctx: Context, src: string): string[] {
  if (!/[*?[]/.test(src)) return ctx.exists(src) ? [src] : [];
  const re = new RegExp(
    `^${src
      .split(/(\*\*|\*|\?)/)
      .map((p) => (p === '**' ? '.*' : p === '*' ? '[^/]*' : p === '?' ? '[^/]' : p.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
      .join('')}$`,
  );
  const parts = new Set<string>();
  for (const f of ctx.files()) {
    const segs = f.split('/');
    for (let n = 1; n <= segs.length; n++) if (re.test(segs.slice(0, n).join('/'))) parts.add(segs.slice(0, n).join('/'));
  }
  return [...parts].sort();
}

export type Origin =
  | { kind: 'context'; path: string }
  | { kind: 'stage'; stage: Stage; path: string } // made in that stage (by RUN) or already in its base image
  | { kind: 'image'; image: string; path: string }; // COPY --from=<an image>

/**
 * Where the file at `path` (absolute) of stage `s` comes from: the last COPY/ADD that writes it,
 * followed through COPY --from and parent stages to the build context, or the stage whose RUN
 * made it.
 */
export function originOf(m: DockerModel, s: Stage, path: string, ctx: Context, before = Infinity): Origin {
  const copies = copiesOf(s, ctx)
    .filter((c) => s.instructions.indexOf(c.ins) < before)
    .reverse();
  for (const c of copies) {
    for (const src of c.sources) {
      let candidate: string | undefined;
      if (!c.destIsDir) {
        if (path === c.dest) candidate = src;
        // COPY --from=stage /a/dir /b/dir: a directory or a file, which a stage does not tell
        else if (c.from !== undefined && c.sources.length === 1 && path.startsWith(`${c.dest}/`))
          candidate = posix.join(src, posix.relative(c.dest, path));
      } else if (path === c.dest || path.startsWith(`${c.dest.replace(/\/$/, '')}/`)) {
        const rest = posix.relative(c.dest, path);
        if (c.flags.parents !== undefined) candidate = rest;
        else if (c.from === undefined && ctx.isFile(src)) candidate = rest === posix.basename(src) ? src : undefined;
        else candidate = rest ? posix.join(src, rest) : src;
      }
      if (candidate === undefined) continue;
      if (c.from === undefined) {
        const p = candidate.replace(/^\/+/, '');
        if (ctx.sent(p)) return { kind: 'context', path: p };
        continue;
      }
      const from = stageByName(m, c.from);
      const abs = posix.resolve('/', candidate);
      if (!from) return { kind: 'image', image: c.from, path: abs };
      return originOf(m, from, abs, ctx);
    }
  }
  if (s.parent) {
    const o = originOf(m, s.parent, path, ctx);
    if (o.kind !== 'stage' || o.stage !== s.parent) return o;
  }
  return { kind: 'stage', stage: s, path };
}

// ------------------------------------------------------------------------------------------
// The entry point script
// ------------------------------------------------------------------------------------------

/** Shell words of one line: quotes removed, `"$@"` kept as a word, comments dropped. */
export function shellWords(line: string): string[] {
  const out: string[] = [];
  for (const m of line.replace(/(^|\s)#.*$/, '').matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

/** The commands of each branch of the `case` statements of a shell script: pattern -> lines. */
export function caseBranches(script: string): Map<string, string[]> {
  const branches = new Map<string, string[]>();
  let current: string[] | undefined;
  let inCase = false;
  for (const raw of script.split('\n')) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) continue;
    if (/^case\b.*\bin$/.test(line)) {
      inCase = true;
      continue;
    }
    if (line === 'esac') {
      inCase = false;
      current = undefined;
      continue;
    }
    if (!inCase) continue;
    const head = /^\(?([^()]+)\)\s*(.*)$/.exec(line);
    if (!current && head) {
      current = [];
      for (const p of head[1].split('|')) branches.set(p.trim(), current);
      const rest = head[2].replace(/;;\s*$/, '').trim();
      if (rest) current.push(rest);
      if (/;;\s*$/.test(line)) current = undefined;
      continue;
    }
    if (current) {
      const body = line.replace(/;;\s*$/, '').trim();
      if (body) current.push(body);
      if (/;;\s*$/.test(line)) current = undefined;
    }
  }
  return branches;
}

/** Node options that take the next word as their value. */
const NODE_VALUE_OPTIONS = new Set([
  '--import',
  '-r',
  '--require',
  '--loader',
  '--experimental-loader',
  '--env-file',
  '--conditions',
  '-C',
  '--title',
  '--input-type',
]);

/** `node [options] script [args]`: the modules preloaded and the script. */
export function nodeInvocation(argv: string[]): { preload: string[]; script?: string } {
  const preload: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (NODE_VALUE_OPTIONS.has(a)) {
      if (['--import', '-r', '--require', '--loader', '--experimental-loader'].includes(a)) preload.push(argv[i + 1]);
      i++;
    } else if (/^--(import|require|loader|experimental-loader)=/.test(a)) preload.push(a.split('=')[1]);
    else if (!a.startsWith('-')) return { preload, script: a };
  }
  return { preload };
}

export interface AppStart {
  app: string;
  /** the process the container ends up running, e.g. ["node", "--import", "tsx", "src/main.ts"] */
  argv: string[];
  /** its working directory in the image */
  cwd: string;
  /** the command replaces the shell (`exec`), so signals reach node */
  exec: boolean;
}

/**
 * What the container runs for `args` (Kubernetes' args replace CMD; the ENTRYPOINT stays): the
 * ENTRYPOINT itself when it is node, or the branch of the entry point script (copied into the
 * image from the build context) that the first argument selects.
 */
export function appStart(m: DockerModel, ctx: Context, args: string[]): AppStart {
  const final = m.final;
  const ep = instructionsOf(final, 'ENTRYPOINT').at(-1);
  const entry = ep ? (isJson(ep) ? words(ep) : ['/bin/sh', '-c', words(ep).join(' ')]) : [];
  const argv = [...entry, ...args];
  const cwd = workdirAt(final);
  if (!argv.length) throw new Error('no ENTRYPOINT and no command');
  if (posix.basename(argv[0]) === 'node') return { app: args[0], argv, cwd, exec: true };
  const scriptPath = posix.resolve(cwd, argv[0]);
  const origin = originOf(m, final, scriptPath, ctx);
  if (origin.kind !== 'context')
    throw new Error(`the ENTRYPOINT ${argv[0]} is not a script copied from the build context (${origin.kind})`);
  const text = ctx.read(origin.path);
  const app = argv[1] ?? '';
  const branches = caseBranches(text);
  const lines = branches.get(app) ?? branches.get('*');
  if (!lines) throw new Error(`${origin.path}: no case branch for "${app}"`);
  let dir = cwd;
  for (const line of lines) {
    const w = shellWords(line);
    if (w[0] === 'cd' && w[1]) dir = posix.resolve(dir, w[1]);
    const exec = w[0] === 'exec';
    const cmd = exec ? w.slice(1) : w;
    if (cmd[0] && posix.basename(cmd[0]) === 'node') return { app, argv: cmd.filter((x) => x !== '$@'), cwd: dir, exec };
  }
  throw new Error(`${origin.path}: the "${app}" branch runs no node`);
}
