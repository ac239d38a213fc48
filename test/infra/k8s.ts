/**
 * Kubernetes side of the infra checks: rendering with `kubectl kustomize`, YAML parsing, schema
 * validation (kubernetes-models), and the checks over rendered objects. Every check is a function
 * of the rendered objects that throws (a failed `expect`) when the property does not hold, so the
 * tests run them on the real renderings and on deliberately broken copies (negative tests).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { parseAllDocuments } from 'yaml';

export type Obj = Record<string, any>;

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (path: string) => readFileSync(path, 'utf8');

// ------------------------------------------------------------------------------------------
// YAML
// ------------------------------------------------------------------------------------------

/** Parses every document of a YAML text as Kubernetes does (YAML 1.1, no duplicate keys); empty documents dropped. */
export function parseYamlText(text: string, where: string): Obj[] {
  const docs = parseAllDocuments(text, { version: '1.1', uniqueKeys: true, prettyErrors: true });
  const out: Obj[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const problems = [...doc.errors, ...doc.warnings].map((e) => e.message);
    if (problems.length) throw new Error(`${where}: ${problems.join('; ')}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${where}: a document is not a mapping`);
    out.push(value as Obj);
  }
  return out;
}
export const parseYamlFile = (path: string) => parseYamlText(read(path), relative(ROOT, path));

// ------------------------------------------------------------------------------------------
// kubectl kustomize
// ------------------------------------------------------------------------------------------

const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const TIMEOUT_MS = 30_000;

function run(file: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((ok, fail) => {
    execFile(file, args, { timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        const why = e.code === 'ENOENT' ? 'not found' : e.killed ? `timed out after ${TIMEOUT_MS} ms` : String(stderr).trim() || e.message;
        fail(Object.assign(new Error(`${file} ${args.join(' ')}: ${why}`), { code: e.code }));
      } else ok({ stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** The kubectl client version if kubectl (with its built-in kustomize) runs here, else undefined. */
export async function kubectlVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await run(KUBECTL, ['version', '--client', '-o', 'json']);
    const v = JSON.parse(stdout) as Obj;
    return `${v.clientVersion?.gitVersion ?? '?'} (kustomize ${v.kustomizeVersion ?? '?'})`;
  } catch {
    return undefined;
  }
}

/** `kubectl kustomize <dir>`: the objects `kubectl apply -k <dir>` would send. */
export async function kustomize(dir: string): Promise<Obj[]> {
  const { stdout } = await run(KUBECTL, ['kustomize', dir]);
  return parseYamlText(stdout, `kubectl kustomize ${relative(ROOT, dir) || dir}`);
}

// ------------------------------------------------------------------------------------------
// Kubernetes schema checks (kubernetes-models)
// ------------------------------------------------------------------------------------------

export const KNOWN_KINDS: Record<string, string[]> = {
  v1: ['ConfigMap', 'Service', 'Namespace'],
  'apps/v1': ['Deployment'],
  'autoscaling/v2': ['HorizontalPodAutoscaler'],
  'policy/v1': ['PodDisruptionBudget'],
  'networking.k8s.io/v1': ['Ingress'],
};
export const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PersistentVolume',
  'StorageClass',
  'IngressClass',
  'PriorityClass',
]);

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

/** The schema problems of one object: type/required-field errors and unknown fields; [] when valid. */
export async function schemaProblems(o: Obj): Promise<string[]> {
  if (!KNOWN_KINDS[o.apiVersion]?.includes(o.kind)) return [`${o.apiVersion} ${o.kind} is not a known apiVersion/kind`];
  const mod = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<string, new (data: Obj) => { validate(): void }>;
  const problems: string[] = [];
  try {
    new mod[o.kind](o).validate();
  } catch (err) {
    problems.push((err as Error).message);
  }
  const dts = join(MODELS_DIR, o.apiVersion, `${o.kind}.d.ts`);
  expect(existsSync(dts), dts).toBe(true);
  problems.push(...unknownFields(o, dts, o.kind).map((p) => `unknown field ${p}`));
  return problems;
}

// ------------------------------------------------------------------------------------------
// Helpers over rendered objects
// ------------------------------------------------------------------------------------------

const group = (apiVersion: string) => (apiVersion.includes('/') ? apiVersion.split('/')[0] : '');
export const idOf = (o: Obj) => `${group(o.apiVersion)}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
export const ofKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
export const named = (objs: Obj[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata?.name === name);
export const matchesLabels = (selector: Obj, labels: Obj) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Asserts the list is not empty (a loop of checks over an empty list checks nothing) and returns it. */
export function nonEmpty<T>(list: T[] | undefined, what: string): T[] {
  expect(list, what).toBeDefined();
  expect(list!.length, `${what}: none`).toBeGreaterThan(0);
  return list!;
}
/** Asserts the object exists and returns it. */
export function must<T>(value: T | undefined | null, what: string): T {
  expect(value, `${what} is missing`).toBeDefined();
  expect(value, `${what} is missing`).not.toBeNull();
  return value!;
}

export function podSpecs(o: Obj): Obj[] {
  if (o.kind === 'Pod') return [o.spec];
  if (o.spec?.template?.spec) return [o.spec.template.spec];
  if (o.spec?.jobTemplate?.spec?.template?.spec) return [o.spec.jobTemplate.spec.template.spec];
  return [];
}
export const containersOf = (o: Obj): Obj[] => podSpecs(o).flatMap((s) => [...(s.initContainers ?? []), ...(s.containers ?? [])]);

export function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q);
  if (!m) throw new Error(`bad quantity ${q}`);
  const mult: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * (m[2] ? mult[m[2]] : 1);
}

/** The container port a probe/Service port (number or name) means. */
export function containerPort(c: Obj, port: string | number): number | undefined {
  if (typeof port === 'number') return (c.ports ?? []).some((p: Obj) => p.containerPort === port) ? port : undefined;
  return (c.ports ?? []).find((p: Obj) => p.name === port)?.containerPort;
}

/** Kubernetes Ingress path matching: Exact, or Prefix by whole path elements; longest wins. */
export function route(ingresses: Obj[], host: string, path: string): { service: string; port: string | number } | undefined {
  let best: { len: number; backend: Obj } | undefined;
  for (const ing of ingresses) {
    for (const rule of ing.spec.rules ?? []) {
      if (rule.host !== undefined && rule.host !== host) continue;
      for (const p of rule.http?.paths ?? []) {
        const prefix = (p.path as string).replace(/\/$/, '');
        const ok = p.pathType === 'Exact' ? path === p.path : p.path === '/' || path === prefix || path.startsWith(`${prefix}/`);
        const len = p.pathType === 'Exact' ? Infinity : prefix.length;
        if (ok && (!best || len > best.len)) best = { len, backend: p.backend };
      }
    }
  }
  if (!best) return undefined;
  const s = best.backend.service;
  return { service: s.name, port: s.port.name ?? s.port.number };
}

/** A percentage ("25%") or integer of a PDB field, as a number of pods out of `replicas`. */
export function podCount(v: number | string, replicas: number, round: 'up' | 'down'): number {
  if (typeof v === 'number') return v;
  const m = /^(\d+)%$/.exec(v);
  if (!m) throw new Error(`bad PDB value ${v}`);
  const exact = (Number(m[1]) / 100) * replicas;
  return round === 'up' ? Math.ceil(exact) : Math.floor(exact);
}
