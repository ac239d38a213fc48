/**
 * Checks of the deployment files in infra/ (no Docker engine or kubectl here, so they are read,
 * rendered and cross-checked against the apps' sources instead of run):
 *
 * - every YAML document parses, the way Kubernetes reads it (YAML 1.1, no duplicate keys);
 * - a small kustomize renderer (resources, namespace, images, strategic-merge patches; anything
 *   else in a kustomization.yaml fails the test, so the files stay within what is checked)
 *   renders the base and every overlay;
 * - every rendered object is validated against the Kubernetes OpenAPI schema
 *   (kubernetes-models: types and required fields) and for unknown fields (typos);
 * - selectors, HPA target, Services, Ingress backends, probes, ports, env names, secret
 *   references, security settings and routing agree with each other and with the apps' sources
 *   and the config schema;
 * - the Dockerfile: Debian base, libsecp256k1, non-root, COPY sources exist and are not
 *   ignored, every workspace package the apps need is copied, the entry points exist.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { configSchema, loadConfig } from '@paidrelay/config';

type Obj = Record<string, any>;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const INFRA = join(ROOT, 'infra');
const BASE = join(INFRA, 'k8s', 'base');
const OVERLAYS = join(INFRA, 'k8s', 'overlays');
const DOCKERFILE = join(INFRA, 'docker', 'Dockerfile');
const DOCKERIGNORE = join(INFRA, 'docker', 'Dockerfile.dockerignore');

/** The Secret the manifests reference (created by the operator, never committed). */
const SECRET_NAME = 'paidrelay-secrets';
const SECRET_KEYS = ['DATABASE_URL', 'RELAY_SECRET_KEY', 'NWC_URL'];
/** Variables read outside the config schema that a manifest may set. */
const ENV_OUTSIDE_SCHEMA = new Set(['CONFIG_FILE', 'SECP256K1_BACKEND', 'NODE_OPTIONS']);
const SCHEMA_KEYS = new Set(Object.keys(configSchema.shape));
const DEFAULTS = configSchema.parse({});

const read = (path: string) => readFileSync(path, 'utf8');

function walk(dir: string, skip = new Set(['node_modules', '.git'])): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (skip.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p, skip));
    else out.push(p);
  }
  return out.sort();
}

// ------------------------------------------------------------------------------------------
// YAML
// ------------------------------------------------------------------------------------------

/** Parses every document of a YAML file as Kubernetes does (YAML 1.1); empty documents dropped. */
function parseYaml(path: string): Obj[] {
  const docs = parseAllDocuments(read(path), { version: '1.1', uniqueKeys: true, prettyErrors: true });
  if (!Array.isArray(docs)) return [];
  const out: Obj[] = [];
  for (const doc of docs) {
    const problems = [...doc.errors, ...doc.warnings].map((e) => e.message);
    if (problems.length) throw new Error(`${relative(ROOT, path)}: ${problems.join('; ')}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${relative(ROOT, path)}: a document is not a mapping`);
    out.push(value as Obj);
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// A small kustomize
// ------------------------------------------------------------------------------------------

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass', 'IngressClass', 'PriorityClass']);
const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'patches']);

/** List fields that strategic merge patches merge by a key instead of replacing. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  imagePullSecrets: 'name',
};

const group = (apiVersion: string) => (apiVersion.includes('/') ? apiVersion.split('/')[0] : '');
const idOf = (o: Obj) => `${group(o.apiVersion)}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

function strategicMerge(target: unknown, patch: unknown, field = ''): unknown {
  if (Array.isArray(patch)) {
    const key = MERGE_KEYS[field];
    if (!key || !Array.isArray(target)) return structuredClone(patch);
    const out = structuredClone(target) as Obj[];
    for (const item of patch as Obj[]) {
      const i = out.findIndex((t) => t[key] === item[key]);
      if (i >= 0) out[i] = strategicMerge(out[i], item) as Obj;
      else out.push(structuredClone(item));
    }
    return out;
  }
  if (patch && typeof patch === 'object') {
    const out: Obj = target && typeof target === 'object' && !Array.isArray(target) ? structuredClone(target as Obj) : {};
    for (const [k, v] of Object.entries(patch as Obj)) {
      if (k.startsWith('$')) throw new Error(`strategic merge directive ${k} is not supported by the in-test renderer`);
      if (v === null) delete out[k];
      else out[k] = strategicMerge(out[k], v, k);
    }
    return out;
  }
  return patch;
}

function podSpecs(o: Obj): Obj[] {
  if (o.kind === 'Pod') return [o.spec];
  if (o.spec?.template?.spec) return [o.spec.template.spec];
  if (o.spec?.jobTemplate?.spec?.template?.spec) return [o.spec.jobTemplate.spec.template.spec];
  return [];
}
const containersOf = (o: Obj): Obj[] => podSpecs(o).flatMap((s) => [...(s.initContainers ?? []), ...(s.containers ?? [])]);

function splitImage(image: string): { name: string; tag?: string; digest?: string } {
  const [rest, digest] = image.split('@');
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) return { name: rest.slice(0, colon), tag: rest.slice(colon + 1), digest };
  return { name: rest, digest };
}

/** Renders a kustomization directory: the objects `kubectl kustomize <dir>` would print. */
function kustomize(dir: string): Obj[] {
  const kFile = join(dir, 'kustomization.yaml');
  if (!existsSync(kFile)) throw new Error(`${relative(ROOT, dir)}: no kustomization.yaml`);
  const [k] = parseYaml(kFile);
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key)) throw new Error(`${relative(ROOT, kFile)}: "${key}" is not supported by the in-test renderer`);
  }
  expect(k.apiVersion).toBe('kustomize.config.k8s.io/v1beta1');
  expect(k.kind).toBe('Kustomization');

  let objects: Obj[] = [];
  for (const r of (k.resources ?? []) as string[]) {
    const p = resolve(dir, r);
    if (!existsSync(p)) throw new Error(`${relative(ROOT, kFile)}: resource ${r} does not exist`);
    objects.push(...(statSync(p).isDirectory() ? kustomize(p) : parseYaml(p)));
  }
  const seen = new Set<string>();
  for (const o of objects) {
    if (seen.has(idOf(o))) throw new Error(`${relative(ROOT, dir)}: ${idOf(o)} twice`);
    seen.add(idOf(o));
  }

  for (const p of (k.patches ?? []) as Obj[]) {
    for (const key of Object.keys(p)) if (key !== 'path') throw new Error(`${relative(ROOT, kFile)}: patch field "${key}" is not supported by the in-test renderer`);
    const [patch] = parseYaml(resolve(dir, p.path));
    const matches = objects.filter(
      (o) => o.kind === patch.kind && group(o.apiVersion) === group(patch.apiVersion) && o.metadata?.name === patch.metadata?.name,
    );
    if (matches.length !== 1) throw new Error(`${relative(ROOT, kFile)}: patch ${p.path} matches ${matches.length} objects`);
    objects = objects.map((o) => (o === matches[0] ? (strategicMerge(o, patch) as Obj) : o));
  }

  if (k.namespace) {
    for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata = { ...o.metadata, namespace: k.namespace };
  }

  for (const img of (k.images ?? []) as Obj[]) {
    for (const o of objects) {
      for (const c of containersOf(o)) {
        const cur = splitImage(c.image);
        if (cur.name !== img.name) continue;
        const name = img.newName ?? cur.name;
        const tag = img.newTag ?? cur.tag;
        c.image = img.digest ? `${name}@${img.digest}` : tag ? `${name}:${tag}` : name;
      }
    }
  }
  return objects;
}

// ------------------------------------------------------------------------------------------
// Kubernetes schema checks (kubernetes-models)
// ------------------------------------------------------------------------------------------

const KNOWN_KINDS: Record<string, string[]> = {
  v1: ['ConfigMap', 'Service', 'Namespace'],
  'apps/v1': ['Deployment'],
  'autoscaling/v2': ['HorizontalPodAutoscaler'],
  'policy/v1': ['PodDisruptionBudget'],
  'networking.k8s.io/v1': ['Ingress'],
};

const MODELS_DIR = realpathSync(join(ROOT, 'test', 'node_modules', 'kubernetes-models'));

/** The .d.ts file of an import specifier as kubernetes-models writes them. */
function resolveDts(from: string, spec: string): string {
  if (spec.startsWith('.')) return resolve(dirname(from), spec.replace(/\.js$/, '.d.ts'));
  const m = /^(@[^/]+\/[^/]+|[^/@][^/]*)(\/.*)?$/.exec(spec);
  if (!m) throw new Error(`cannot resolve ${spec}`);
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const pkg = join(dir, 'node_modules', m[1]);
    if (existsSync(pkg)) {
      const sub = join(pkg, m[2] ?? '');
      return existsSync(`${sub}.d.ts`) ? `${sub}.d.ts` : join(sub, 'index.d.ts');
    }
    if (dir === dirname(dir)) throw new Error(`cannot resolve ${spec} from ${from}`);
  }
}

type Field = { kind: 'leaf' } | { kind: 'map' } | { kind: 'ref'; file: string; array: boolean };
const fieldCache = new Map<string, Map<string, Field> | null>();

/** The fields of the interface a kubernetes-models .d.ts declares (null: a scalar type alias). */
function fieldsOf(file: string): Map<string, Field> | null {
  if (fieldCache.has(file)) return fieldCache.get(file)!;
  const text = read(file);
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) imports.set(m[1], resolveDts(file, m[2]));
  const start = text.search(/^export interface \w+/m);
  let fields: Map<string, Field> | null = null;
  if (start >= 0) {
    fields = new Map();
    const body = text.slice(start, text.indexOf('\n}', start)).replace(/\/\*\*[\s\S]*?\*\//g, '');
    for (const m of body.matchAll(/^ {4}"([^"]+)"\??: (.*)$/gm)) {
      const type = m[2].replace(/;$/, '').trim();
      const arr = /^Array<(\w+)>$/.exec(type);
      const name = arr ? arr[1] : type;
      if (type.startsWith('{')) fields.set(m[1], { kind: 'map' });
      else if (imports.has(name)) fields.set(m[1], { kind: 'ref', file: imports.get(name)!, array: !!arr });
      else fields.set(m[1], { kind: 'leaf' });
    }
  }
  fieldCache.set(file, fields);
  return fields;
}

/** Every field of `value` must be declared by the schema (the OpenAPI schema allows unknown ones). */
function unknownFields(value: unknown, file: string, path: string): string[] {
  const fields = fieldsOf(file);
  if (!fields || value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value as Obj)) {
    const f = fields.get(k);
    if (!f) {
      out.push(`${path}.${k}`);
      continue;
    }
    if (f.kind !== 'ref') continue;
    if (f.array && Array.isArray(v)) v.forEach((item, i) => out.push(...unknownFields(item, f.file, `${path}.${k}[${i}]`)));
    else if (!f.array) out.push(...unknownFields(v, f.file, `${path}.${k}`));
  }
  return out;
}

async function schemaProblems(o: Obj): Promise<string[]> {
  const spec = `kubernetes-models/${o.apiVersion}/${o.kind}`;
  const mod = (await import(spec)) as Record<string, new (data: Obj) => { validate(): void }>;
  const problems: string[] = [];
  try {
    new mod[o.kind](o).validate();
  } catch (err) {
    problems.push((err as Error).message);
  }
  const dts = join(MODELS_DIR, o.apiVersion === 'v1' ? 'v1' : o.apiVersion, `${o.kind}.d.ts`);
  problems.push(...unknownFields(o, dts, o.kind).map((p) => `unknown field ${p}`));
  return problems;
}

// ------------------------------------------------------------------------------------------
// Helpers over rendered objects
// ------------------------------------------------------------------------------------------

const ofKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
const named = (objs: Obj[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata?.name === name);
const matchesLabels = (selector: Obj, labels: Obj) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q);
  if (!m) throw new Error(`bad quantity ${q}`);
  const mult: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * (m[2] ? mult[m[2]] : 1);
}

/** The container port a probe/Service port (number or name) means. */
function containerPort(c: Obj, port: string | number): number | undefined {
  if (typeof port === 'number') return (c.ports ?? []).some((p: Obj) => p.containerPort === port) ? port : undefined;
  return (c.ports ?? []).find((p: Obj) => p.name === port)?.containerPort;
}

/** Kubernetes Ingress path matching: Exact, or Prefix by whole path elements; longest wins. */
function route(ingresses: Obj[], host: string, path: string): { service: string; port: string | number } | undefined {
  let best: { len: number; backend: Obj } | undefined;
  for (const ing of ingresses) {
    for (const rule of ing.spec.rules ?? []) {
      if (rule.host !== undefined && rule.host !== host) continue;
      for (const p of rule.http?.paths ?? []) {
        const prefix = (p.path as string).replace(/\/$/, '');
        const ok =
          p.pathType === 'Exact' ? path === p.path : p.path === '/' || path === prefix || path.startsWith(`${prefix}/`);
        const len = p.pathType === 'Exact' ? Infinity : prefix.length;
        if (ok && (!best || len > best.len)) best = { len, backend: p.backend };
      }
    }
  }
  if (!best) return undefined;
  const s = best.backend.service;
  return { service: s.name, port: s.port.name ?? s.port.number };
}

/** What a container of a Deployment sees as its environment (image ENV, then envFrom, then env). */
function containerEnv(objs: Obj[], c: Obj, imageEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...imageEnv };
  for (const from of c.envFrom ?? []) {
    const cm = named(objs, 'ConfigMap', from.configMapRef?.name);
    Object.assign(env, cm?.data ?? {});
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef) env[e.name] = SECRET_PLACEHOLDERS[e.valueFrom.secretKeyRef.key];
  }
  return env;
}

const SECRET_PLACEHOLDERS: Record<string, string> = {
  DATABASE_URL: 'postgres://paidrelay:secret@postgres:5432/paidrelay',
  RELAY_SECRET_KEY: '1'.repeat(64),
  NWC_URL: `nostr+walletconnect://${'2'.repeat(64)}?relay=wss%3A%2F%2Frelay.example.org&secret=${'3'.repeat(64)}`,
};

// ------------------------------------------------------------------------------------------
// Dockerfile
// ------------------------------------------------------------------------------------------

interface Instruction {
  cmd: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l));
  const joined: string[] = [];
  let cur = '';
  for (const line of lines) {
    if (/\\\s*$/.test(line)) cur += line.replace(/\\\s*$/, ' ');
    else {
      cur += line;
      if (cur.trim()) joined.push(cur.trim());
      cur = '';
    }
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const l of joined) {
    const [, cmd, rest] = /^(\w+)\s*(.*)$/.exec(l)!;
    const ins = { cmd: cmd.toUpperCase(), args: rest };
    if (ins.cmd === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      const from = m[1].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args[a ?? b] ?? '');
      stages.push({ from, name: m[2], instructions: [] });
    } else if (stages.length === 0 && ins.cmd === 'ARG') {
      const [k, v] = rest.split('=');
      args[k.trim()] = (v ?? '').trim();
    } else {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return { args, stages };
}

/** COPY/ADD without --from: [sources, destination]. */
function copySources(ins: Instruction): { sources: string[]; dest: string } | undefined {
  if ((ins.cmd !== 'COPY' && ins.cmd !== 'ADD') || /--from=/.test(ins.args)) return undefined;
  const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
  return { sources: words.slice(0, -1), dest: words.at(-1)! };
}

function execForm(args: string): string[] {
  const v = JSON.parse(args) as unknown;
  if (!Array.isArray(v)) throw new Error(`not an exec form: ${args}`);
  return v as string[];
}

/** .dockerignore matching as BuildKit does it: last matching pattern wins, parents count. */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      const re = pattern
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((part) =>
          part === '**/' ? '(?:.*/)?' : part === '**' ? '.*' : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('');
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (path: string) => {
    const parts = path.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const r of rules) if (candidates.some((c) => r.re.test(c))) excluded = !r.negate;
    return excluded;
  };
}

const dockerText = read(DOCKERFILE);
const docker = parseDockerfile(dockerText);
const finalStage = docker.stages.at(-1)!;
const buildStages = docker.stages.slice(0, -1);
const runText = (s: Stage) => s.instructions.filter((i) => i.cmd === 'RUN').map((i) => i.args).join('\n');
const ignored = dockerignore(read(DOCKERIGNORE));

function imageEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of finalStage.instructions.filter((i) => i.cmd === 'ENV')) {
    for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]] = m[2].replace(/^"|"$/g, '');
  }
  return env;
}
function imageUser(): string | undefined {
  return finalStage.instructions.filter((i) => i.cmd === 'USER').at(-1)?.args.trim();
}

/** The entry point script: app name -> [working dir in the image, script relative to it]. */
function entrypointApps(): Map<string, { dir: string; script: string }> {
  const text = read(join(INFRA, 'docker', 'entrypoint.sh'));
  const apps = new Map<string, { dir: string; script: string }>();
  for (const m of text.matchAll(/^\s*(\w+)\)\s*\n\s*cd (\S+)\s*\n\s*exec node --import tsx (\S+)/gm)) apps.set(m[1], { dir: m[2], script: m[3] });
  return apps;
}
const WORKDIR = finalStage.instructions.filter((i) => i.cmd === 'WORKDIR').at(-1)?.args.trim() ?? '/';
/** A path in the image, under WORKDIR, as a path in the repository. */
const repoPath = (imagePath: string) => join(ROOT, relative(WORKDIR, imagePath));

// ------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------

const yamlFiles = walk(INFRA).filter((f) => /\.ya?ml$/.test(f));
const overlayDirs = existsSync(OVERLAYS) ? readdirSync(OVERLAYS).map((d) => join(OVERLAYS, d)).filter((d) => statSync(d).isDirectory()) : [];
const renderings = [BASE, ...overlayDirs].map((dir) => ({ name: relative(ROOT, dir), dir }));

describe('infra: YAML files', () => {
  it('there are manifests to check', () => {
    expect(yamlFiles.length).toBeGreaterThanOrEqual(10);
    expect(existsSync(join(BASE, 'kustomization.yaml'))).toBe(true);
  });

  it.each(yamlFiles.map((f) => [relative(ROOT, f), f]))('%s parses as YAML 1.1 with no duplicate keys', (_, file) => {
    const docs = parseYaml(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      expect(typeof d.apiVersion).toBe('string');
      expect(typeof d.kind).toBe('string');
    }
  });

  it('no Secret is committed: secrets are only referenced', () => {
    for (const f of yamlFiles) for (const d of parseYaml(f)) expect(d.kind, relative(ROOT, f)).not.toBe('Secret');
  });

  it('every YAML file under infra/k8s is used by a kustomization', () => {
    const used = new Set<string>();
    for (const k of yamlFiles.filter((f) => f.endsWith('kustomization.yaml'))) {
      used.add(k);
      const [doc] = parseYaml(k);
      for (const r of [...(doc.resources ?? []), ...((doc.patches ?? []) as Obj[]).map((p) => p.path)]) used.add(resolve(dirname(k), r));
    }
    const unused = yamlFiles.filter((f) => f.startsWith(join(INFRA, 'k8s')) && !used.has(f));
    expect(unused.map((f) => relative(ROOT, f))).toEqual([]);
  });
});

describe.each(renderings)('infra: kustomize $name', ({ dir }) => {
  const objs = kustomize(dir);
  const deployments = ofKind(objs, 'Deployment');
  const relay = named(objs, 'Deployment', 'paidrelay-relay')!;
  const admission = named(objs, 'Deployment', 'paidrelay-admission')!;
  const configMap = named(objs, 'ConfigMap', 'paidrelay-config')!;
  const relayC = () => relay.spec.template.spec.containers[0] as Obj;
  const admissionC = () => admission.spec.template.spec.containers[0] as Obj;

  it('renders the expected objects', () => {
    const counts: Record<string, number> = {};
    for (const o of objs) counts[o.kind] = (counts[o.kind] ?? 0) + 1;
    expect(counts).toMatchObject({ Deployment: 2, Service: 2, HorizontalPodAutoscaler: 1, PodDisruptionBudget: 2, ConfigMap: 1, Ingress: 1 });
    expect(relay).toBeDefined();
    expect(admission).toBeDefined();
    expect(configMap).toBeDefined();
  });

  it('every object is a known apiVersion/kind with a valid name, and passes the Kubernetes schema without unknown fields', async () => {
    for (const o of objs) {
      expect(KNOWN_KINDS[o.apiVersion], `${o.apiVersion} ${o.kind}`).toContain(o.kind);
      expect(o.metadata?.name, idOf(o)).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(o.metadata.name.length).toBeLessThanOrEqual(63);
      expect(await schemaProblems(o), idOf(o)).toEqual([]);
    }
  });

  it('label and annotation values are strings (unquoted true or numbers are rejected by the API)', () => {
    for (const o of objs) {
      for (const meta of [o.metadata, o.spec?.template?.metadata].filter(Boolean)) {
        for (const v of [...Object.values(meta.labels ?? {}), ...Object.values(meta.annotations ?? {})]) expect(typeof v, idOf(o)).toBe('string');
      }
    }
    for (const v of Object.values(configMap.data)) expect(typeof v).toBe('string');
  });

  it('the namespace, when set, is on every namespaced object and its Namespace exists', () => {
    const namespaces = new Set(objs.filter((o) => !CLUSTER_SCOPED.has(o.kind)).map((o) => o.metadata.namespace));
    expect(namespaces.size).toBe(1);
    const [ns] = [...namespaces];
    if (ns !== undefined) expect(named(objs, 'Namespace', ns)).toBeDefined();
  });

  it('Deployment selectors match their pod templates and no two Deployments share pods', () => {
    for (const d of deployments) {
      expect(d.spec.selector.matchExpressions).toBeUndefined();
      expect(Object.keys(d.spec.selector.matchLabels).length).toBeGreaterThan(0);
      expect(matchesLabels(d.spec.selector.matchLabels, d.spec.template.metadata.labels), d.metadata.name).toBe(true);
      for (const other of deployments.filter((x) => x !== d)) {
        expect(matchesLabels(d.spec.selector.matchLabels, other.spec.template.metadata.labels), `${d.metadata.name} selects ${other.metadata.name}'s pods`).toBe(false);
      }
      for (const t of d.spec.template.spec.topologySpreadConstraints ?? []) {
        expect(matchesLabels(t.labelSelector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
      }
    }
  });

  it('each Service and PDB selects the pods of exactly one Deployment, and Service ports reach container ports', () => {
    for (const s of ofKind(objs, 'Service')) {
      const targets = deployments.filter((d) => matchesLabels(s.spec.selector, d.spec.template.metadata.labels));
      expect(targets.map((d) => d.metadata.name), s.metadata.name).toHaveLength(1);
      for (const p of s.spec.ports) {
        const containers = targets[0].spec.template.spec.containers as Obj[];
        expect(containers.some((c) => containerPort(c, p.targetPort ?? p.port) !== undefined), `${s.metadata.name}:${p.port}`).toBe(true);
      }
    }
    for (const pdb of ofKind(objs, 'PodDisruptionBudget')) {
      const targets = deployments.filter((d) => matchesLabels(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels));
      expect(targets, pdb.metadata.name).toHaveLength(1);
      expect((pdb.spec.minAvailable === undefined) !== (pdb.spec.maxUnavailable === undefined), 'exactly one of minAvailable, maxUnavailable').toBe(true);
      // an integer minAvailable as large as the replicas would block every node drain
      const replicas = targets[0].spec.replicas ?? named(objs, 'HorizontalPodAutoscaler', targets[0].metadata.name)?.spec.minReplicas ?? 1;
      if (typeof pdb.spec.minAvailable === 'number') expect(pdb.spec.minAvailable).toBeLessThan(replicas);
      if (typeof pdb.spec.maxUnavailable === 'number') expect(pdb.spec.maxUnavailable).toBeGreaterThan(0);
    }
  });

  it('the relay HPA scales an existing Deployment on CPU, from at least 3 replicas, and owns its replica count', () => {
    const hpas = ofKind(objs, 'HorizontalPodAutoscaler');
    for (const h of hpas) {
      const ref = h.spec.scaleTargetRef;
      expect(ref.apiVersion).toBe('apps/v1');
      expect(ref.kind).toBe('Deployment');
      const target = named(objs, 'Deployment', ref.name);
      expect(target, `HPA ${h.metadata.name} -> ${ref.name}`).toBeDefined();
      expect(h.spec.maxReplicas).toBeGreaterThanOrEqual(h.spec.minReplicas);
      const cpu = (h.spec.metrics as Obj[]).find((m) => m.type === 'Resource' && m.resource.name === 'cpu');
      expect(cpu?.resource.target.type).toBe('Utilization');
      expect(cpu?.resource.target.averageUtilization).toBeGreaterThan(0);
      // utilization is relative to the request: every container needs a CPU request
      for (const c of target!.spec.template.spec.containers) expect(c.resources?.requests?.cpu, c.name).toBeDefined();
      // a replicas field would reset the HPA's count on every apply
      expect(target!.spec.replicas, `${ref.name} has spec.replicas while an HPA scales it`).toBeUndefined();
    }
    const relayHpa = hpas.find((h) => h.spec.scaleTargetRef.name === relay.metadata.name);
    expect(relayHpa?.spec.minReplicas).toBeGreaterThanOrEqual(3);
    expect(admission.spec.replicas).toBeGreaterThanOrEqual(2);
  });

  it('probes use the paths and ports the apps serve', () => {
    const relayHttp = read(join(ROOT, 'apps/relay/src/http.ts'));
    const admissionApp = read(join(ROOT, 'apps/admission/src/app.ts'));
    for (const p of ["'/healthz'", "'/readyz'", "'/metrics'"]) {
      expect(relayHttp).toContain(p);
      expect(admissionApp).toContain(p);
    }
    const cases: [Obj, number][] = [
      [relayC(), Number(configMap.data.PORT ?? DEFAULTS.PORT)],
      [admissionC(), Number(configMap.data.ADMISSION_PORT ?? DEFAULTS.ADMISSION_PORT)],
    ];
    expect(cases[0][1]).toBe(DEFAULTS.PORT);
    expect(cases[1][1]).toBe(DEFAULTS.ADMISSION_PORT);
    for (const [c, port] of cases) {
      expect(c.readinessProbe.httpGet.path, c.name).toBe('/readyz');
      expect(c.livenessProbe.httpGet.path, c.name).toBe('/healthz');
      if (c.startupProbe) expect(c.startupProbe.httpGet.path).toBe('/healthz');
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter(Boolean)) {
        expect(containerPort(c, probe.httpGet.port), `${c.name} probe port`).toBe(port);
      }
    }
  });

  it('Prometheus scrape annotations point at /metrics on the container port', () => {
    for (const d of deployments) {
      const a = d.spec.template.metadata.annotations ?? {};
      const c = d.spec.template.spec.containers[0];
      expect(a['prometheus.io/scrape']).toBe('true');
      expect(a['prometheus.io/path']).toBe('/metrics');
      expect(containerPort(c, Number(a['prometheus.io/port'])), d.metadata.name).toBeDefined();
    }
  });

  it('containers start the right app of the image', () => {
    const apps = entrypointApps();
    for (const [c, app] of [
      [relayC(), 'relay'],
      [admissionC(), 'admission'],
    ] as const) {
      expect(c.command, 'the image entry point must not be replaced').toBeUndefined();
      expect(c.args).toEqual([app]);
      expect(apps.has(app)).toBe(true);
      expect(c.image, 'images are rewritten by the kustomization').not.toBe('paidrelay');
    }
  });

  it('every env name is a config variable, and secrets come only from the documented Secret', () => {
    for (const k of Object.keys(configMap.data)) expect(SCHEMA_KEYS.has(k) || ENV_OUTSIDE_SCHEMA.has(k), `ConfigMap key ${k}`).toBe(true);
    for (const k of SECRET_KEYS) expect(configMap.data[k], `${k} must not be in the ConfigMap`).toBeUndefined();
    for (const c of deployments.flatMap(containersOf)) {
      for (const e of c.env ?? []) {
        expect(SCHEMA_KEYS.has(e.name) || ENV_OUTSIDE_SCHEMA.has(e.name), `env ${e.name}`).toBe(true);
        if (SECRET_KEYS.includes(e.name)) expect(e.valueFrom?.secretKeyRef, `${e.name} from the Secret`).toBeDefined();
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) {
          expect(ref.name).toBe(SECRET_NAME);
          expect(SECRET_KEYS).toContain(ref.key);
          expect(ref.key).toBe(e.name);
          expect(ref.optional).not.toBe(true);
        }
        expect(e.valueFrom?.configMapKeyRef).toBeUndefined();
      }
      for (const from of c.envFrom ?? []) {
        expect(from.secretRef, 'secrets by key only').toBeUndefined();
        expect(named(objs, 'ConfigMap', from.configMapRef.name), from.configMapRef.name).toBeDefined();
      }
    }
    const secretEnv = (c: Obj) => (c.env ?? []).filter((e: Obj) => e.valueFrom?.secretKeyRef).map((e: Obj) => e.name).sort();
    expect(secretEnv(relayC())).toEqual(['DATABASE_URL', 'RELAY_SECRET_KEY']);
    expect(secretEnv(admissionC())).toEqual(['DATABASE_URL', 'NWC_URL', 'RELAY_SECRET_KEY']);
  });

  it('the configuration each pod sees is valid for production', () => {
    for (const c of [relayC(), admissionC()]) {
      const env = containerEnv(objs, c, imageEnv());
      const config = loadConfig(env);
      expect(config.NODE_ENV).toBe('production');
      expect(config.TRUST_PROXY).toBe(true);
      expect(config.DATABASE_URL).toBeDefined();
      expect(config.RELAY_SECRET_KEY, 'the same key on every replica').toBeDefined();
      expect(config.REDIS_URL, 'several replicas need the Redis bus').toMatch(/^rediss?:\/\//);
      expect(config.RELAY_URL).toMatch(/^wss:\/\//);
      expect(config.PAYMENTS_URL).toMatch(/^https:\/\//);
      expect(config.DATA_DIR).toMatch(/^\//);
    }
    expect(loadConfig(containerEnv(objs, admissionC(), imageEnv())).NWC_URL, 'admission needs NWC_URL in production').toBeDefined();
  });

  it('pods run as non-root with a read-only root filesystem, DATA_DIR and /tmp on emptyDir volumes', () => {
    const uid = Number(imageUser()?.split(':')[0]);
    for (const d of deployments) {
      const spec = d.spec.template.spec;
      expect(spec.securityContext.runAsNonRoot).toBe(true);
      expect(spec.securityContext.runAsUser).toBe(uid);
      expect(spec.automountServiceAccountToken).toBe(false);
      const volumes = new Map<string, Obj>((spec.volumes ?? []).map((v: Obj) => [v.name, v]));
      for (const c of spec.containers as Obj[]) {
        expect(c.securityContext.readOnlyRootFilesystem, c.name).toBe(true);
        expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
        expect(c.securityContext.capabilities.drop).toContain('ALL');
        expect(c.securityContext.privileged).not.toBe(true);
        for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `volume ${m.name}`).toBe(true);
        const emptyDirAt = (path: string) =>
          (c.volumeMounts ?? []).some((m: Obj) => m.mountPath === path && volumes.get(m.name)?.emptyDir !== undefined);
        const env = containerEnv(objs, c, imageEnv());
        expect(emptyDirAt(env.DATA_DIR), `${c.name}: DATA_DIR ${env.DATA_DIR} on an emptyDir`).toBe(true);
        expect(emptyDirAt('/tmp'), `${c.name}: /tmp on an emptyDir (tsx's cache)`).toBe(true);
      }
    }
  });

  it('every container has CPU and memory requests and limits, requests within limits', () => {
    for (const c of deployments.flatMap(containersOf)) {
      for (const r of ['cpu', 'memory']) {
        const req = c.resources?.requests?.[r];
        const lim = c.resources?.limits?.[r];
        expect(req, `${c.name} requests.${r}`).toBeDefined();
        expect(lim, `${c.name} limits.${r}`).toBeDefined();
        expect(quantity(req)).toBeLessThanOrEqual(quantity(lim));
      }
    }
  });

  it('shutdown drains: a preStop sleep shorter than the grace period, so the load balancer lets go first', () => {
    for (const d of deployments) {
      const spec = d.spec.template.spec;
      const grace = spec.terminationGracePeriodSeconds;
      expect(grace, d.metadata.name).toBeGreaterThan(0);
      for (const c of spec.containers as Obj[]) {
        const pre = c.lifecycle?.preStop;
        const seconds = pre?.sleep?.seconds ?? (pre?.exec?.command?.[0] === 'sleep' ? Number(pre.exec.command[1]) : undefined);
        expect(seconds, `${c.name} preStop sleep`).toBeGreaterThan(0);
        // after the sleep, SIGTERM and the app's own drain need time too
        expect(grace - seconds!).toBeGreaterThanOrEqual(15);
      }
    }
    const relayGrace = relay.spec.template.spec.terminationGracePeriodSeconds;
    expect(relayGrace).toBeGreaterThanOrEqual(30);
    for (const d of deployments) {
      const ru = d.spec.strategy?.rollingUpdate;
      expect(ru?.maxUnavailable, `${d.metadata.name}: a rollout keeps capacity`).toBe(0);
    }
  });

  it('the Ingress sends the relay host to the relay and every public admission route to the admission service', () => {
    const ingresses = ofKind(objs, 'Ingress');
    const services = ofKind(objs, 'Service');
    for (const ing of ingresses) {
      expect(ing.spec.ingressClassName).toBeDefined();
      const a = ing.metadata.annotations ?? {};
      // WebSocket connections idle far longer than nginx's default 60 s
      expect(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThanOrEqual(3600);
      expect(Number(a['nginx.ingress.kubernetes.io/proxy-send-timeout'])).toBeGreaterThanOrEqual(3600);
      // Server-Sent Events for invoice status
      expect(a['nginx.ingress.kubernetes.io/proxy-buffering']).toBe('off');
      for (const rule of ing.spec.rules) {
        for (const p of rule.http.paths) {
          expect(['Prefix', 'Exact']).toContain(p.pathType);
          const svc = named(services, 'Service', p.backend.service.name);
          expect(svc, `backend ${p.backend.service.name}`).toBeDefined();
          const port = p.backend.service.port;
          expect(svc!.spec.ports.some((sp: Obj) => (port.name ? sp.name === port.name : sp.port === port.number)), `port of ${svc!.metadata.name}`).toBe(true);
        }
      }
    }
    const serviceOf = (d: Obj) => services.find((s) => matchesLabels(s.spec.selector, d.spec.template.metadata.labels))!.metadata.name;
    const relayUrl = new URL(configMap.data.RELAY_URL);
    const paymentsUrl = new URL(configMap.data.PAYMENTS_URL);
    const tlsHosts = ingresses.flatMap((i) => (i.spec.tls ?? []).flatMap((t: Obj) => t.hosts));
    expect(tlsHosts).toContain(relayUrl.hostname);
    expect(tlsHosts).toContain(paymentsUrl.hostname);

    // the relay: WebSocket and NIP-11 on "/"
    for (const path of ['/', '/some/client/path']) expect(route(ingresses, relayUrl.hostname, path)?.service, path).toBe(serviceOf(relay));

    // the admission service: every route its router declares (from the source), at the payments origin
    const admissionApp = read(join(ROOT, 'apps/admission/src/app.ts'));
    const declared = [...admissionApp.matchAll(/\.on\('(?:GET|POST)', '([^']+)'/g)].map((m) => m[1]);
    expect(declared.length).toBeGreaterThan(5);
    const internal = new Set(['/healthz', '/readyz', '/metrics']);
    const basePath = paymentsUrl.pathname.replace(/\/$/, '') || '/pay';
    expect(admissionApp).toContain("basePath + '/pay.js'");
    const publicPaths = [
      ...declared.filter((p) => !internal.has(p)).map((p) => p.replace(/:\w+/g, configMap.data.LNURL_NAME ?? DEFAULTS.LNURL_NAME)),
      basePath,
      `${basePath}/`,
      `${basePath}/pay.js`,
      `${basePath}/pay.css`,
    ];
    for (const path of publicPaths) expect(route(ingresses, paymentsUrl.hostname, path)?.service, `${paymentsUrl.hostname}${path}`).toBe(serviceOf(admission));
    // the lightning address resolves on the payments host (LUD-16)
    const lnurl = `/.well-known/lnurlp/${configMap.data.LNURL_NAME ?? DEFAULTS.LNURL_NAME}`;
    expect(route(ingresses, paymentsUrl.hostname, lnurl)?.service).toBe(serviceOf(admission));
  });
});

describe('infra: overlays', () => {
  it('there is an example overlay', () => {
    expect(overlayDirs.map((d) => relative(OVERLAYS, d))).toContain('example');
  });

  it.each(overlayDirs.map((d) => [relative(ROOT, d), d]))('%s: its images, namespace and patches take effect', (_, dir) => {
    const [k] = parseYaml(join(dir, 'kustomization.yaml'));
    const objs = kustomize(dir);
    const base = kustomize(BASE);
    // an images entry that matches nothing is a silent no-op in kustomize
    for (const img of (k.images ?? []) as Obj[]) {
      const want = `${img.newName ?? img.name}${img.newTag ? `:${img.newTag}` : ''}`;
      const images = objs.flatMap(containersOf).map((c) => c.image);
      expect(images.length).toBeGreaterThan(0);
      for (const i of images) expect(i, `images entry ${img.name} must match the base's image`).toBe(want);
    }
    if (k.namespace) for (const o of objs) if (!CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace).toBe(k.namespace);
    // a patch changes something, and a ConfigMap patch keeps the base's other keys
    for (const p of (k.patches ?? []) as Obj[]) {
      const [patch] = parseYaml(resolve(dir, p.path));
      const before = named(base, patch.kind, patch.metadata.name);
      const after = named(objs, patch.kind, patch.metadata.name);
      expect(after, p.path).toBeDefined();
      expect({ ...after, metadata: { ...after!.metadata, namespace: undefined } }, `${p.path} changes nothing`).not.toEqual(before);
      if (patch.kind === 'ConfigMap') {
        for (const key of Object.keys(before!.data)) expect(after!.data[key], key).toBeDefined();
        for (const [key, v] of Object.entries(patch.data)) expect(after!.data[key]).toBe(v);
      }
    }
  });

  it('the strategic merge used by the renderer merges maps, keyed lists and replaces other lists', () => {
    const target = { spec: { a: 1, b: { c: 2 }, rules: [{ x: 1 }], containers: [{ name: 'a', image: 'i' }, { name: 'b', image: 'j' }] } };
    const patch = { spec: { a: null, b: { d: 3 }, rules: [{ y: 2 }], containers: [{ name: 'b', image: 'k' }] } };
    expect(strategicMerge(target, patch)).toEqual({
      spec: { b: { c: 2, d: 3 }, rules: [{ y: 2 }], containers: [{ name: 'a', image: 'i' }, { name: 'b', image: 'k' }] },
    });
  });
});

describe('infra: Dockerfile', () => {
  it('has a build stage and a runtime stage on a Debian (glibc) Node 20 image, not Alpine', () => {
    expect(docker.stages.length).toBeGreaterThanOrEqual(2);
    const stageNames = new Set(docker.stages.map((s) => s.name).filter(Boolean));
    for (const s of docker.stages) {
      if (stageNames.has(s.from)) continue;
      expect(s.from).toMatch(/^node:20[.\d]*-(bookworm|bullseye|trixie)(-slim)?$/);
      expect(s.from).not.toMatch(/alpine/);
    }
    for (const ins of finalStage.instructions.filter((i) => i.cmd === 'COPY' && /--from=/.test(i.args))) {
      expect(stageNames.has(/--from=(\S+)/.exec(ins.args)![1])).toBe(true);
    }
  });

  it('builds the native verifier against libsecp256k1-dev and ships the runtime library', () => {
    const build = buildStages.map(runText).join('\n');
    for (const pkg of ['build-essential', 'python3', 'libsecp256k1-dev']) expect(build).toContain(pkg);
    expect(runText(finalStage)).toMatch(/apt-get install[^\n]*libsecp256k1-1/);
    expect(runText(finalStage)).not.toContain('libsecp256k1-dev');
    expect(build).toMatch(/test -f packages\/secp256k1\/build\/Release\/secp256k1_verify\.node/);
  });

  it('installs with pnpm 12 from the lockfile, production dependencies of the two apps only', () => {
    const build = buildStages.map(runText).join('\n');
    expect(build).toMatch(/npm install -g pnpm@(\$\{PNPM_VERSION\}|12)/);
    if (/\$\{PNPM_VERSION\}/.test(build)) expect(dockerText).toMatch(/ARG PNPM_VERSION=12\b/);
    const install = /pnpm install ([^\n&]*)/.exec(build)?.[1] ?? '';
    expect(install).toContain('--frozen-lockfile');
    expect(install).toContain('--prod');
    const filters = [...install.matchAll(/--filter "?([^"\s]+)"?/g)].map((m) => m[1]);
    expect(filters.sort()).toEqual(['@paidrelay/admission...', '@paidrelay/relay...']);
    // --prod: the apps must have tsx as a dependency, not a devDependency
    for (const app of ['relay', 'admission']) {
      const pkg = JSON.parse(read(join(ROOT, 'apps', app, 'package.json'))) as Obj;
      expect(pkg.dependencies.tsx, `apps/${app} depends on tsx`).toBeDefined();
      expect(pkg.name).toBe(`@paidrelay/${app}`);
    }
  });

  it('every COPY source exists in the repository and is not excluded by Dockerfile.dockerignore', () => {
    const sources = docker.stages.flatMap((s) => s.instructions).map(copySources).filter((x) => x !== undefined).flatMap((x) => x.sources);
    expect(sources.length).toBeGreaterThan(5);
    expect(sources, 'copy only what is needed').not.toContain('.');
    for (const src of sources) {
      const p = join(ROOT, src);
      expect(existsSync(p), src).toBe(true);
      const files = statSync(p).isDirectory() ? walk(p).map((f) => relative(ROOT, f)) : [src];
      const kept = files.filter((f) => !ignored(f));
      expect(kept.length, `${src}: everything is ignored`).toBeGreaterThan(0);
      if (!statSync(p).isDirectory()) expect(ignored(src), `${src} is ignored`).toBe(false);
      for (const f of files.filter((x) => x.endsWith('.ts') && !x.includes('/test/'))) expect(ignored(f), `${f} is ignored`).toBe(false);
    }
  });

  it('the ignore file keeps local state out of the build context', () => {
    for (const p of ['node_modules', 'apps/relay/node_modules/x', '.git/HEAD', 'data/pglite/x', 'packages/secp256k1/build/Release/secp256k1_verify.node', '.env', 'apps/relay/test/a.test.ts']) {
      expect(ignored(p), p).toBe(true);
    }
    for (const p of ['package.json', 'pnpm-lock.yaml', 'apps/relay/src/main.ts', 'infra/docker/entrypoint.sh']) expect(ignored(p), p).toBe(false);
  });

  it('copies the manifest and sources of every workspace package the apps need, and the verifier sources before the install', () => {
    const byName = new Map<string, string>();
    for (const parent of ['apps', 'packages']) {
      for (const d of readdirSync(join(ROOT, parent))) {
        const f = join(ROOT, parent, d, 'package.json');
        if (existsSync(f)) byName.set((JSON.parse(read(f)) as Obj).name, `${parent}/${d}`);
      }
    }
    const needed = new Set<string>();
    const visit = (name: string) => {
      const dir = byName.get(name);
      if (!dir || needed.has(dir)) return;
      needed.add(dir);
      const pkg = JSON.parse(read(join(ROOT, dir, 'package.json'))) as Obj;
      for (const [dep, v] of Object.entries({ ...(pkg.dependencies ?? {}) })) if (String(v).startsWith('workspace:')) visit(dep);
    };
    visit('@paidrelay/relay');
    visit('@paidrelay/admission');
    expect(needed.size).toBeGreaterThanOrEqual(8);

    const buildStage = buildStages.find((s) => s.instructions.some((i) => i.cmd === 'RUN' && /pnpm install/.test(i.args)))!;
    const installAt = buildStage.instructions.findIndex((i) => i.cmd === 'RUN' && /pnpm install/.test(i.args));
    const copied = (until: number) =>
      buildStage.instructions
        .slice(0, until)
        .map(copySources)
        .filter((x) => x !== undefined)
        .flatMap((x) => x.sources);
    const covers = (paths: string[], file: string) => paths.some((p) => file === p || file.startsWith(`${p.replace(/\/$/, '')}/`));
    const beforeInstall = copied(installAt);
    const all = copied(buildStage.instructions.length);
    for (const f of ['package.json', 'pnpm-workspace.yaml', 'pnpm-lock.yaml']) expect(covers(beforeInstall, f), f).toBe(true);
    for (const dir of needed) {
      expect(covers(beforeInstall, `${dir}/package.json`), `${dir}/package.json before the install`).toBe(true);
      for (const f of walk(join(ROOT, dir, 'src')).map((x) => relative(ROOT, x))) expect(covers(all, f), f).toBe(true);
    }
    // the verifier's install script, binding.gyp and its C sources are there when pnpm install runs
    const sec = 'packages/secp256k1';
    const secPkg = JSON.parse(read(join(ROOT, sec, 'package.json'))) as Obj;
    const script = /node (\S+)/.exec(secPkg.scripts.install)![1];
    const gyp = JSON.parse(read(join(ROOT, sec, 'binding.gyp'))) as Obj;
    for (const f of [script, 'binding.gyp', ...gyp.targets.flatMap((t: Obj) => t.sources)]) expect(covers(beforeInstall, `${sec}/${f}`), `${sec}/${f}`).toBe(true);
  });

  it('runs as a non-root user with NODE_ENV=production, DATA_DIR writable', () => {
    const user = imageUser();
    expect(user).toBeDefined();
    expect(user).toMatch(/^\d+(:\d+)?$/); // numeric, so Kubernetes can check runAsNonRoot
    expect(Number(user!.split(':')[0])).not.toBe(0);
    const env = imageEnv();
    expect(env.NODE_ENV).toBe('production');
    expect(Number(env.PORT ?? DEFAULTS.PORT)).toBe(DEFAULTS.PORT);
    expect(Number(env.ADMISSION_PORT ?? DEFAULTS.ADMISSION_PORT)).toBe(DEFAULTS.ADMISSION_PORT);
    expect(runText(finalStage)).toContain(`chown ${user} ${env.DATA_DIR}`);
    const exposed = finalStage.instructions.filter((i) => i.cmd === 'EXPOSE').flatMap((i) => i.args.split(/\s+/)).map(Number);
    expect(exposed.sort()).toEqual([DEFAULTS.PORT, DEFAULTS.ADMISSION_PORT].sort());
  });

  it('its entry point runs apps/relay/src/main.ts and apps/admission/src/main.ts, the relay by default', () => {
    const entry = finalStage.instructions.find((i) => i.cmd === 'ENTRYPOINT')!;
    const cmd = finalStage.instructions.find((i) => i.cmd === 'CMD')!;
    const [script] = execForm(entry.args);
    expect(execForm(cmd.args)).toEqual(['relay']);
    // the script is copied to where ENTRYPOINT runs it, executable
    const copy = finalStage.instructions.find((i) => i.cmd === 'COPY' && i.args.trim().endsWith(` ${script}`));
    expect(copy?.args).toContain('--chmod=0755');
    expect(copySources(copy!)!.sources).toEqual(['infra/docker/entrypoint.sh']);
    expect(read(join(INFRA, 'docker', 'entrypoint.sh'))).toMatch(/^#!\/bin\/sh\n/);

    const apps = entrypointApps();
    expect([...apps.keys()].sort()).toEqual(['admission', 'relay']);
    for (const [app, { dir, script: main }] of apps) {
      const file = join(repoPath(dir), main);
      expect(relative(ROOT, file)).toBe(`apps/${app}/src/main.ts`);
      expect(existsSync(file), file).toBe(true);
      // the package's own start script runs the same file
      const pkg = JSON.parse(read(join(repoPath(dir), 'package.json'))) as Obj;
      expect(pkg.scripts.start).toBe(`tsx ${main}`);
    }
    // exec, so SIGTERM reaches node and the app drains
    expect(read(join(INFRA, 'docker', 'entrypoint.sh'))).not.toMatch(/^\s*node /m);
  });

  it('the health check (for plain Docker) hits /healthz', () => {
    const hc = finalStage.instructions.find((i) => i.cmd === 'HEALTHCHECK');
    if (hc) expect(hc.args).toContain('/healthz');
  });
});

describe('infra: README', () => {
  const readme = read(join(INFRA, 'README.md'));

  it('documents the build, the secret, applying and scaling', () => {
    expect(readme).toContain('docker build -f infra/docker/Dockerfile');
    expect(readme).toContain('kubectl apply -k infra/k8s/base');
    expect(readme).toContain('kubectl apply -k infra/k8s/overlays/example');
    expect(readme).toMatch(new RegExp(`kubectl (-n \\S+ )?create secret generic ${SECRET_NAME}`));
    for (const k of SECRET_KEYS) expect(readme).toContain(`--from-literal=${k}=`);
    expect(readme).toMatch(/kubectl scale|kubectl patch hpa|minReplicas/);
  });

  it('describes every manifest of the base', () => {
    const [k] = parseYaml(join(BASE, 'kustomization.yaml'));
    for (const r of k.resources as string[]) expect(readme, r).toContain(r);
  });
});
