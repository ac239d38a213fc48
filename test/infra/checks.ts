/**
 * The checks of infra/, as functions of what they check (rendered objects, a parsed Dockerfile,
 * a build context), so that test/infra.test.ts runs each on the real files and some on broken
 * copies. Each throws (a failed `expect`, with a message naming what is wrong) or returns.
 */
import { posix } from 'node:path';
import { expect } from 'vitest';
import { configSchema, createLogger, loadConfig } from '@paidrelay/config';
import { normalizeHttpUrl } from '@paidrelay/nostr';
import { startDashboard } from '../../apps/dashboard/src/server.ts';
import { adminPubkeys } from '../../apps/relay/src/management.ts';
import {
  appStart,
  type Context,
  copiesOf,
  type DockerModel,
  expandSource,
  type IgnoreFile,
  instructionsOf,
  originOf,
  runTexts,
  type Stage,
  stageByName,
  stageEnv,
  stageUser,
  words,
  workdirAt,
  nodeInvocation,
} from './docker.ts';
import {
  CLUSTER_SCOPED,
  containerPort,
  containersOf,
  idOf,
  KNOWN_KINDS,
  matchesLabels,
  must,
  named,
  nonEmpty,
  type Obj,
  ofKind,
  podCount,
  quantity,
  route,
  schemaProblems,
} from './k8s.ts';

/** The Secret the manifests reference (created by the operator, never committed). */
export const SECRET_NAME = 'paidrelay-secrets';
export const SECRET_KEYS = ['DATABASE_URL', 'RELAY_SECRET_KEY', 'NWC_URL'];
/** Variables read outside the config schema that a manifest may set. */
const ENV_OUTSIDE_SCHEMA = new Set(['CONFIG_FILE', 'SECP256K1_BACKEND', 'NODE_OPTIONS']);
const SCHEMA_KEYS = new Set(Object.keys(configSchema.shape));
export const DEFAULTS = configSchema.parse({});
/** The deployables of the image, each a Deployment `paidrelay-<app>` that runs `<image> <app>`. */
export const APPS = ['relay', 'admission', 'dashboard'] as const;
export type App = (typeof APPS)[number];
/** The config variable of each app's port. */
const PORT_VAR = { relay: 'PORT', admission: 'ADMISSION_PORT', dashboard: 'DASHBOARD_PORT' } as const;
/** The keys of the Secret each app gets (the dashboard holds none: the admin's browser signs every call). */
const APP_SECRETS: Record<App, string[]> = {
  relay: ['DATABASE_URL', 'RELAY_SECRET_KEY'],
  admission: ['DATABASE_URL', 'NWC_URL', 'RELAY_SECRET_KEY'],
  dashboard: [],
};
/** The source text of each app's HTTP server: what paths it serves ('/healthz', '/readyz', '/metrics'). */
export type Served = Record<App, string>;
const serves = (source: string, path: string) => source.includes(`'${path}'`);

const SECRET_PLACEHOLDERS: Record<string, string> = {
  DATABASE_URL: 'postgres://paidrelay:secret@postgres:5432/paidrelay',
  RELAY_SECRET_KEY: '1'.repeat(64),
  NWC_URL: `nostr+walletconnect://${'2'.repeat(64)}?relay=wss%3A%2F%2Frelay.example.org&secret=${'3'.repeat(64)}`,
};

/** What the manifests need to know of the image. */
export interface ImageFacts {
  model: DockerModel;
  ctx: Context;
  env: Record<string, string>;
  user?: string;
}
export const imageFacts = (model: DockerModel, ctx: Context): ImageFacts => ({
  model,
  ctx,
  env: stageEnv(model.final),
  user: stageUser(model.final),
});

// ==========================================================================================
// Rendered manifests
// ==========================================================================================

const deploymentsOf = (objs: Obj[]) => nonEmpty(ofKind(objs, 'Deployment'), 'Deployments');
const appDeployment = (objs: Obj[], app: string) => must(named(objs, 'Deployment', `paidrelay-${app}`), `Deployment paidrelay-${app}`);
const appContainer = (objs: Obj[], app: string) =>
  must(appDeployment(objs, app).spec?.template?.spec?.containers?.[0] as Obj | undefined, `container of paidrelay-${app}`);
const configMapOf = (objs: Obj[]) => must(named(objs, 'ConfigMap', 'paidrelay-config'), 'ConfigMap paidrelay-config');

/** What a container sees as its environment (image ENV, then envFrom, then env). */
export function containerEnv(objs: Obj[], c: Obj, imageEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...imageEnv };
  for (const from of c.envFrom ?? [])
    Object.assign(env, must(named(objs, 'ConfigMap', from.configMapRef?.name), `ConfigMap ${from.configMapRef?.name}`).data ?? {});
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef) env[e.name] = SECRET_PLACEHOLDERS[e.valueFrom.secretKeyRef.key];
  }
  return env;
}

export function checkRenderedObjects(objs: Obj[]) {
  const counts: Record<string, number> = {};
  for (const o of objs) counts[o.kind] = (counts[o.kind] ?? 0) + 1;
  expect(counts).toMatchObject({ Deployment: 3, Service: 3, HorizontalPodAutoscaler: 1, PodDisruptionBudget: 2, ConfigMap: 1, Ingress: 2 });
  for (const app of APPS) appDeployment(objs, app);
  configMapOf(objs);
  const ids = objs.map(idOf);
  expect(
    ids.filter((id, i) => ids.indexOf(id) !== i),
    'objects rendered twice',
  ).toEqual([]);
  expect(objs.filter((o) => o.kind === 'Secret').map(idOf), 'no Secret is committed: secrets are only referenced').toEqual([]);
}

/** Known apiVersion/kind, a valid name, the Kubernetes schema (types, required fields) and no unknown fields. */
export async function checkSchemas(objs: Obj[]) {
  for (const o of nonEmpty(objs, 'rendered objects')) {
    expect(KNOWN_KINDS[o.apiVersion], `${o.apiVersion} ${o.kind}`).toContain(o.kind);
    expect(o.metadata?.name, idOf(o)).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(o.metadata.name.length, idOf(o)).toBeLessThanOrEqual(63);
    expect(await schemaProblems(o), idOf(o)).toEqual([]);
  }
}

/** Label, annotation and ConfigMap values are strings (an unquoted true or number is rejected by the API). */
export function checkStringValues(objs: Obj[]) {
  for (const o of objs) {
    for (const meta of [o.metadata, o.spec?.template?.metadata].filter(Boolean)) {
      for (const [key, v] of [...Object.entries(meta.labels ?? {}), ...Object.entries(meta.annotations ?? {})])
        expect(typeof v, `${idOf(o)} ${key}`).toBe('string');
    }
    if (o.kind === 'ConfigMap') {
      for (const [key, v] of nonEmpty(Object.entries(o.data ?? {}), `${idOf(o)} data`))
        expect(typeof v, `${idOf(o)} data.${key}`).toBe('string');
    }
  }
}

/** Every namespaced object is in `expected` (undefined: none set), and that Namespace is rendered too. */
export function checkNamespace(objs: Obj[], expected: string | undefined) {
  const namespaced = nonEmpty(
    objs.filter((o) => !CLUSTER_SCOPED.has(o.kind)),
    'namespaced objects',
  );
  expect([...new Set(namespaced.map((o) => o.metadata.namespace))], 'namespaces of the namespaced objects').toEqual([expected]);
  for (const o of objs.filter((x) => CLUSTER_SCOPED.has(x.kind))) expect(o.metadata.namespace, idOf(o)).toBeUndefined();
  if (expected === undefined) expect(ofKind(objs, 'Namespace'), 'no namespace is set, so no Namespace object').toEqual([]);
  else must(named(objs, 'Namespace', expected), `Namespace ${expected}`);
}

export function checkSelectors(objs: Obj[]) {
  const deployments = deploymentsOf(objs);
  for (const d of deployments) {
    expect(d.spec.selector.matchExpressions, d.metadata.name).toBeUndefined();
    expect(Object.keys(d.spec.selector.matchLabels ?? {}).length, `${d.metadata.name} selector`).toBeGreaterThan(0);
    expect(matchesLabels(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${d.metadata.name} selects its pods`).toBe(true);
    for (const other of deployments.filter((x) => x !== d)) {
      expect(
        matchesLabels(d.spec.selector.matchLabels, other.spec.template.metadata.labels),
        `${d.metadata.name} selects ${other.metadata.name}'s pods`,
      ).toBe(false);
    }
    // spread over nodes, and the spread counts this Deployment's pods
    for (const t of nonEmpty<Obj>(d.spec.template.spec.topologySpreadConstraints, `${d.metadata.name} topologySpreadConstraints`)) {
      expect(matchesLabels(t.labelSelector.matchLabels, d.spec.template.metadata.labels), `${d.metadata.name} spread selector`).toBe(true);
    }
  }
}

export function checkServicesAndPdbs(objs: Obj[]) {
  const deployments = deploymentsOf(objs);
  for (const s of nonEmpty(ofKind(objs, 'Service'), 'Services')) {
    const targets = deployments.filter((d) => matchesLabels(s.spec.selector ?? {}, d.spec.template.metadata.labels));
    expect(
      targets.map((d) => d.metadata.name),
      `pods of Service ${s.metadata.name}`,
    ).toHaveLength(1);
    for (const p of nonEmpty<Obj>(s.spec.ports, `${s.metadata.name} ports`)) {
      const containers = targets[0].spec.template.spec.containers as Obj[];
      expect(
        containers.some((c) => containerPort(c, p.targetPort ?? p.port) !== undefined),
        `${s.metadata.name}:${p.port} reaches a container port`,
      ).toBe(true);
    }
  }
  for (const pdb of nonEmpty(ofKind(objs, 'PodDisruptionBudget'), 'PodDisruptionBudgets')) {
    const targets = deployments.filter((d) => matchesLabels(pdb.spec.selector?.matchLabels ?? {}, d.spec.template.metadata.labels));
    expect(
      targets.map((d) => d.metadata.name),
      `pods of PDB ${pdb.metadata.name}`,
    ).toHaveLength(1);
    const { minAvailable, maxUnavailable } = pdb.spec;
    expect(
      (minAvailable === undefined) !== (maxUnavailable === undefined),
      `${pdb.metadata.name}: exactly one of minAvailable, maxUnavailable`,
    ).toBe(true);
    // the budget must allow at least one eviction, or every node drain blocks
    const d = targets[0];
    const replicas = d.spec.replicas ?? named(objs, 'HorizontalPodAutoscaler', d.metadata.name)?.spec.minReplicas ?? 1;
    const allowed =
      minAvailable !== undefined ? replicas - podCount(minAvailable, replicas, 'up') : podCount(maxUnavailable, replicas, 'down');
    expect(allowed, `${pdb.metadata.name}: evictions allowed with ${replicas} replicas`).toBeGreaterThan(0);
  }
}

export function checkHpa(objs: Obj[]) {
  const relay = appDeployment(objs, 'relay');
  const hpas = nonEmpty(ofKind(objs, 'HorizontalPodAutoscaler'), 'HorizontalPodAutoscalers');
  for (const h of hpas) {
    const ref = h.spec.scaleTargetRef;
    expect(ref.apiVersion).toBe('apps/v1');
    expect(ref.kind).toBe('Deployment');
    const target = must(named(objs, 'Deployment', ref.name), `HPA ${h.metadata.name} -> Deployment ${ref.name}`);
    expect(h.spec.maxReplicas).toBeGreaterThanOrEqual(h.spec.minReplicas);
    const cpu = must(
      (h.spec.metrics as Obj[] | undefined)?.find((m) => m.type === 'Resource' && m.resource.name === 'cpu'),
      `HPA ${h.metadata.name} CPU metric`,
    );
    expect(cpu.resource.target.type).toBe('Utilization');
    expect(cpu.resource.target.averageUtilization).toBeGreaterThan(0);
    // utilization is relative to the request: every container needs a CPU request
    for (const c of nonEmpty(target.spec.template.spec.containers as Obj[], `${ref.name} containers`))
      expect(c.resources?.requests?.cpu, `${c.name} requests.cpu`).toBeDefined();
    // a replicas field would reset the HPA's count on every apply
    expect(target.spec.replicas, `${ref.name} has spec.replicas while an HPA scales it`).toBeUndefined();
  }
  const relayHpa = must(
    hpas.find((h) => h.spec.scaleTargetRef.name === relay.metadata.name),
    'the relay HPA',
  );
  expect(relayHpa.spec.minReplicas, 'relay minReplicas').toBeGreaterThanOrEqual(3);
  expect(appDeployment(objs, 'admission').spec.replicas, 'admission replicas').toBeGreaterThanOrEqual(2);
}

/**
 * Probes: startup and liveness on /healthz, readiness on /readyz where the app serves it (else
 * /healthz), on the port the app listens on (its port variable, as the pod sees it).
 */
export function checkProbes(objs: Obj[], served: Served, imageEnv: Record<string, string>) {
  for (const app of APPS) {
    expect(serves(served[app], '/healthz'), `the ${app} serves '/healthz'`).toBe(true);
    const c = appContainer(objs, app);
    const port = Number(containerEnv(objs, c, imageEnv)[PORT_VAR[app]] ?? DEFAULTS[PORT_VAR[app]]);
    const probes = {
      startupProbe: '/healthz',
      livenessProbe: '/healthz',
      readinessProbe: serves(served[app], '/readyz') ? '/readyz' : '/healthz',
    };
    for (const [kind, path] of Object.entries(probes)) {
      const probe = must(c[kind] as Obj | undefined, `${c.name} ${kind}`);
      expect(probe.httpGet?.path, `${c.name} ${kind} path`).toBe(path);
      expect(containerPort(c, probe.httpGet.port), `${c.name} ${kind} port = ${PORT_VAR[app]}`).toBe(port);
    }
  }
}

/** Prometheus scrapes /metrics of the apps that serve it, and only those. */
export function checkScrapeAnnotations(objs: Obj[], served: Served) {
  for (const app of APPS) {
    const d = appDeployment(objs, app);
    const a = d.spec.template.metadata.annotations ?? {};
    const c = d.spec.template.spec.containers[0];
    if (!serves(served[app], '/metrics')) {
      expect(a['prometheus.io/scrape'], `${d.metadata.name}: the ${app} serves no /metrics to scrape`).not.toBe('true');
      continue;
    }
    expect(a['prometheus.io/scrape'], d.metadata.name).toBe('true');
    expect(a['prometheus.io/path'], d.metadata.name).toBe('/metrics');
    expect(containerPort(c, Number(a['prometheus.io/port'])), `${d.metadata.name} prometheus.io/port`).toBeDefined();
  }
}

/** The containers keep the image's entry point and pick their app by args; the image starts that app. */
export function checkContainerCommands(objs: Obj[], image: ImageFacts) {
  for (const app of APPS) {
    const c = appContainer(objs, app);
    expect(c.command, `${c.name}: the image entry point must not be replaced`).toBeUndefined();
    expect(c.args, `${c.name} args`).toEqual([app]);
    expect(c.image, `${c.name}: images are rewritten by the kustomization`).not.toBe('paidrelay');
    const start = appStart(image.model, image.ctx, c.args);
    expect(start.argv[0], `${c.name} runs node`).toMatch(/(^|\/)node$/);
    const script = must(nodeInvocation(start.argv).script, `${c.name}: the script node runs`);
    expect(posix.resolve(start.cwd, script), `${c.name} runs the ${app}`).toMatch(new RegExp(`/apps/${app}/`));
  }
}

export function checkEnvAndSecrets(objs: Obj[]) {
  const cm = configMapOf(objs);
  nonEmpty(Object.keys(cm.data ?? {}), 'ConfigMap data');
  for (const key of Object.keys(cm.data))
    expect(SCHEMA_KEYS.has(key) || ENV_OUTSIDE_SCHEMA.has(key), `ConfigMap key ${key} is a config variable`).toBe(true);
  for (const key of SECRET_KEYS) expect(cm.data[key], `${key} must not be in the ConfigMap`).toBeUndefined();
  for (const c of deploymentsOf(objs).flatMap(containersOf)) {
    for (const e of c.env ?? []) {
      expect(SCHEMA_KEYS.has(e.name) || ENV_OUTSIDE_SCHEMA.has(e.name), `env ${e.name} is a config variable`).toBe(true);
      expect(e.valueFrom?.configMapKeyRef, `env ${e.name}: the ConfigMap comes by envFrom`).toBeUndefined();
      if (SECRET_KEYS.includes(e.name)) expect(e.valueFrom?.secretKeyRef, `${e.name} from the Secret`).toBeDefined();
    }
    const refs = (c.env ?? []).map((e: Obj) => [e.name, e.valueFrom?.secretKeyRef]).filter(([, r]: [string, Obj | undefined]) => r);
    for (const [name, ref] of refs as [string, Obj][]) {
      expect(ref.name, `${name} secret`).toBe(SECRET_NAME);
      expect(ref.key, `${name} key`).toBe(name);
      expect(SECRET_KEYS).toContain(ref.key);
      expect(ref.optional, `${name} optional`).not.toBe(true);
    }
    for (const from of nonEmpty<Obj>(c.envFrom, `${c.name} envFrom`)) {
      expect(from.secretRef, 'secrets by key only').toBeUndefined();
      must(named(objs, 'ConfigMap', from.configMapRef?.name), `envFrom ConfigMap ${from.configMapRef?.name}`);
    }
  }
  const secretEnv = (c: Obj) =>
    (c.env ?? [])
      .filter((e: Obj) => e.valueFrom?.secretKeyRef)
      .map((e: Obj) => e.name)
      .sort();
  for (const app of APPS) expect(secretEnv(appContainer(objs, app)), `the ${app} secrets`).toEqual(APP_SECRETS[app]);
}

/** The configuration a pod of the app sees (image ENV + ConfigMap + Secret), as the app loads it. */
export const podConfig = (objs: Obj[], app: App, imageEnv: Record<string, string>) =>
  loadConfig(containerEnv(objs, appContainer(objs, app), imageEnv));

/** The configuration each pod sees loads and is fit for production; ADMIN_PUBKEYS is there and the relay accepts it. */
export function checkProductionConfig(objs: Obj[], imageEnv: Record<string, string>) {
  expect(Object.keys(configMapOf(objs).data), 'ADMIN_PUBKEYS in the ConfigMap (who may manage the relay)').toContain('ADMIN_PUBKEYS');
  for (const app of APPS) {
    const config = podConfig(objs, app, imageEnv);
    expect(config.NODE_ENV, app).toBe('production');
    // the dashboard needs only the relay URL its page calls: see checkDashboard
    if (app === 'dashboard') continue;
    expect(config.TRUST_PROXY, app).toBe(true);
    expect(config.DATABASE_URL, app).toBeDefined();
    expect(config.RELAY_SECRET_KEY, `${app}: the same key on every replica`).toBeDefined();
    expect(config.REDIS_URL, `${app}: several replicas need the Redis bus`).toMatch(/^rediss?:\/\//);
    expect(config.RELAY_URL, app).toMatch(/^wss:\/\//);
    expect(config.PAYMENTS_URL, app).toMatch(/^https:\/\//);
    expect(config.DATA_DIR, app).toMatch(/^\//);
    if (app === 'admission') expect(config.NWC_URL, 'admission needs NWC_URL in production').toBeDefined();
    // the relay parses ADMIN_PUBKEYS at start and stops on a bad entry
    if (app === 'relay') expect(() => adminPubkeys(config), 'ADMIN_PUBKEYS as the relay reads it').not.toThrow();
  }
}

/**
 * Non-root (the image's numeric USER), read-only root filesystem, no capabilities, and nothing
 * writable mounted: the apps run built JavaScript and, with DATABASE_URL and RELAY_SECRET_KEY
 * from the Secret, write no file. DATA_DIR is then unused, and must stay unwritable so that a pod
 * given an empty DATABASE_URL fails instead of keeping an embedded database of its own.
 */
export function checkPodSecurity(objs: Obj[], image: Pick<ImageFacts, 'user' | 'env'>) {
  const uid = Number(must(image.user, 'the image USER').split(':')[0]);
  expect(Number.isInteger(uid) && uid > 0, `image USER ${image.user} is a non-root uid`).toBe(true);
  for (const d of deploymentsOf(objs)) {
    const spec = d.spec.template.spec;
    expect(spec.securityContext?.runAsNonRoot, `${d.metadata.name} runAsNonRoot`).toBe(true);
    expect(spec.securityContext?.runAsUser, `${d.metadata.name} runAsUser = the image's USER`).toBe(uid);
    expect(spec.automountServiceAccountToken, `${d.metadata.name} automountServiceAccountToken`).toBe(false);
    const volumes = new Map<string, Obj>((spec.volumes ?? []).map((v: Obj) => [v.name, v]));
    for (const c of nonEmpty(spec.containers as Obj[], `${d.metadata.name} containers`)) {
      const sc = c.securityContext ?? {};
      expect(sc.readOnlyRootFilesystem, `${c.name} readOnlyRootFilesystem`).toBe(true);
      expect(sc.allowPrivilegeEscalation, `${c.name} allowPrivilegeEscalation`).toBe(false);
      expect(sc.capabilities?.drop, `${c.name} capabilities.drop`).toContain('ALL');
      expect(sc.privileged, `${c.name} privileged`).not.toBe(true);
      for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `volume ${m.name}`).toBe(true);
      const writable = (c.volumeMounts ?? []).filter((m: Obj) => m.readOnly !== true).map((m: Obj) => m.mountPath);
      expect(writable, `${c.name}: writable mounts (the apps write no file in production)`).toEqual([]);
      const env = containerEnv(objs, c, image.env);
      expect(env.DATA_DIR, `${c.name} DATA_DIR`).toMatch(/^\//);
    }
  }
}

export function checkResources(objs: Obj[]) {
  for (const c of nonEmpty(deploymentsOf(objs).flatMap(containersOf), 'containers')) {
    for (const r of ['cpu', 'memory']) {
      const req = c.resources?.requests?.[r];
      const lim = c.resources?.limits?.[r];
      expect(req, `${c.name} requests.${r}`).toBeDefined();
      expect(lim, `${c.name} limits.${r}`).toBeDefined();
      expect(quantity(req), `${c.name} ${r} request within the limit`).toBeLessThanOrEqual(quantity(lim));
    }
  }
}

export function checkShutdown(objs: Obj[]) {
  for (const d of deploymentsOf(objs)) {
    const spec = d.spec.template.spec;
    const grace = spec.terminationGracePeriodSeconds;
    expect(grace, `${d.metadata.name} terminationGracePeriodSeconds`).toBeGreaterThan(0);
    for (const c of nonEmpty(spec.containers as Obj[], `${d.metadata.name} containers`)) {
      const pre = c.lifecycle?.preStop;
      const seconds = pre?.sleep?.seconds ?? (pre?.exec?.command?.[0] === 'sleep' ? Number(pre.exec.command[1]) : undefined);
      expect(seconds, `${c.name} preStop sleep`).toBeGreaterThan(0);
      // after the sleep, SIGTERM and the app's own drain need time too
      expect(grace - seconds!, `${c.name}: grace period after the preStop sleep`).toBeGreaterThanOrEqual(15);
    }
    expect(d.spec.strategy?.rollingUpdate?.maxUnavailable, `${d.metadata.name}: a rollout keeps capacity`).toBe(0);
  }
  expect(appDeployment(objs, 'relay').spec.template.spec.terminationGracePeriodSeconds, 'relay grace period').toBeGreaterThanOrEqual(30);
}

/** The name of the Service that selects the Deployment's pods. */
const serviceName = (objs: Obj[], d: Obj): string =>
  must(
    ofKind(objs, 'Service').find((s) => matchesLabels(s.spec.selector, d.spec.template.metadata.labels)),
    `Service of ${d.metadata.name}`,
  ).metadata.name;

export function checkIngress(objs: Obj[], admissionApp: string) {
  const ingresses = nonEmpty(ofKind(objs, 'Ingress'), 'Ingresses');
  const services = ofKind(objs, 'Service');
  const cm = configMapOf(objs);
  const longLived = new Set(['relay', 'admission'].map((app) => serviceName(objs, appDeployment(objs, app))));
  for (const ing of ingresses) {
    expect(ing.spec.ingressClassName, `${ing.metadata.name} ingressClassName`).toBeDefined();
    const a = ing.metadata.annotations ?? {};
    const backends = (ing.spec.rules ?? []).flatMap((r: Obj) => (r.http?.paths ?? []).map((p: Obj) => p.backend.service.name));
    if (backends.some((b: string) => longLived.has(b))) {
      // WebSocket connections idle far longer than nginx's default 60 s
      expect(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout']), 'proxy-read-timeout').toBeGreaterThanOrEqual(3600);
      expect(Number(a['nginx.ingress.kubernetes.io/proxy-send-timeout']), 'proxy-send-timeout').toBeGreaterThanOrEqual(3600);
      // Server-Sent Events for invoice status
      expect(a['nginx.ingress.kubernetes.io/proxy-buffering'], 'proxy-buffering').toBe('off');
    }
    for (const rule of nonEmpty(ing.spec.rules as Obj[], `${ing.metadata.name} rules`)) {
      for (const p of nonEmpty(rule.http?.paths as Obj[], `${ing.metadata.name} ${rule.host} paths`)) {
        expect(['Prefix', 'Exact']).toContain(p.pathType);
        const svc = must(named(services, 'Service', p.backend.service.name), `backend Service ${p.backend.service.name}`);
        const port = p.backend.service.port;
        expect(
          svc.spec.ports.some((sp: Obj) => (port.name ? sp.name === port.name : sp.port === port.number)),
          `port of ${svc.metadata.name}`,
        ).toBe(true);
      }
    }
  }
  const relayUrl = new URL(cm.data.RELAY_URL);
  const paymentsUrl = new URL(cm.data.PAYMENTS_URL);
  const tlsHosts = ingresses.flatMap((i) => (i.spec.tls ?? []).flatMap((t: Obj) => t.hosts));
  expect(tlsHosts, 'TLS hosts').toContain(relayUrl.hostname);
  expect(tlsHosts, 'TLS hosts').toContain(paymentsUrl.hostname);

  // the relay: WebSocket and NIP-11 on "/"
  const relaySvc = serviceName(objs, appDeployment(objs, 'relay'));
  for (const path of ['/', '/some/client/path'])
    expect(route(ingresses, relayUrl.hostname, path)?.service, `${relayUrl.hostname}${path}`).toBe(relaySvc);

  // the admission service: every route its router declares (from the source), at the payments origin
  const admissionSvc = serviceName(objs, appDeployment(objs, 'admission'));
  const declared = [...admissionApp.matchAll(/\.on\('(?:GET|POST)', '([^']+)'/g)].map((m) => m[1]);
  expect(declared.length, 'routes declared by apps/admission/src/app.ts').toBeGreaterThan(5);
  const internal = new Set(['/healthz', '/readyz', '/metrics']);
  const basePath = paymentsUrl.pathname.replace(/\/$/, '') || '/pay';
  expect(admissionApp).toContain("basePath + '/pay.js'");
  const lnurlName = cm.data.LNURL_NAME ?? DEFAULTS.LNURL_NAME;
  const publicPaths = [
    ...declared.filter((p) => !internal.has(p)).map((p) => p.replace(/:\w+/g, lnurlName)),
    basePath,
    `${basePath}/`,
    `${basePath}/pay.js`,
    `${basePath}/pay.css`,
    // the lightning address resolves on the payments host (LUD-16)
    `/.well-known/lnurlp/${lnurlName}`,
  ];
  for (const path of publicPaths)
    expect(route(ingresses, paymentsUrl.hostname, path)?.service, `${paymentsUrl.hostname}${path}`).toBe(admissionSvc);
}

/** What the dashboard serves when configured as its pod is. */
export type DashboardPage = { html: string; csp: string; healthz: number };

/** Starts the real dashboard server with its pod's configuration (on a free local port) and reads its page. */
export async function servedDashboard(objs: Obj[], imageEnv: Record<string, string>): Promise<DashboardPage> {
  const config = { ...podConfig(objs, 'dashboard', imageEnv), HOST: '127.0.0.1' };
  const dashboard = await startDashboard(config, createLogger('silent', 'dashboard'), { port: 0 });
  try {
    const get = (path: string) => fetch(new URL(path, dashboard.url), { signal: AbortSignal.timeout(10_000) });
    const page = await get('/');
    expect(page.status, 'the dashboard page').toBe(200);
    return { html: await page.text(), csp: page.headers.get('content-security-policy') ?? '', healthz: (await get('/healthz')).status };
  } finally {
    await dashboard.close();
  }
}

const unescapeHtml = (s: string) =>
  s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e as string]!);

/**
 * Behind the Ingress, the dashboard works: on each host the Ingress gives it, the page and the
 * script and stylesheet it loads (absolute paths) reach the dashboard Service, over TLS; the
 * relay URL the page calls is https, reaches the relay Service, is the URL the relay's NIP-98
 * check accepts (RELAY_URL), and the page's Content-Security-Policy lets it connect there.
 */
export function checkDashboard(objs: Obj[], imageEnv: Record<string, string>, page: DashboardPage) {
  const ingresses = nonEmpty(ofKind(objs, 'Ingress'), 'Ingresses');
  const dashboardSvc = serviceName(objs, appDeployment(objs, 'dashboard'));
  const relaySvc = serviceName(objs, appDeployment(objs, 'relay'));
  const tlsHosts = ingresses.flatMap((i) => (i.spec.tls ?? []).flatMap((t: Obj) => t.hosts));
  expect(page.healthz, 'the dashboard answers its probes (/healthz)').toBe(200);

  const assets = [...page.html.matchAll(/<(?:script|link)\b[^>]*\s(?:src|href)="([^"]+)"/g)]
    .map((m) => unescapeHtml(m[1]))
    .filter((u) => !u.startsWith('data:'));
  expect(assets.length, 'the script and stylesheet of the page').toBeGreaterThanOrEqual(2);
  const hosts = [
    ...new Set(
      ingresses.flatMap((i) =>
        (i.spec.rules ?? [])
          .filter((r: Obj) => (r.http?.paths ?? []).some((p: Obj) => p.backend.service.name === dashboardSvc))
          .map((r: Obj) => r.host as string),
      ),
    ),
  ];
  for (const host of nonEmpty(hosts, `Ingress hosts of ${dashboardSvc}`)) {
    expect(host, 'the dashboard has a host name').toBeDefined();
    expect(tlsHosts, `TLS for the dashboard host ${host}`).toContain(host);
    for (const path of ['/', ...assets]) {
      const u = new URL(path, `https://${host}/`);
      expect(u.host, `${path}: the page loads it from its own host`).toBe(host);
      expect(route(ingresses, host, u.pathname)?.service, `${host}${u.pathname}`).toBe(dashboardSvc);
    }
  }

  const calls = new URL(unescapeHtml(must(/data-relay-url="([^"]*)"/.exec(page.html)?.[1], 'the relay URL of the page')));
  expect(calls.protocol, `the page calls ${calls.href} over TLS`).toBe('https:');
  expect(tlsHosts, `TLS for ${calls.hostname}`).toContain(calls.hostname);
  expect(route(ingresses, calls.hostname, calls.pathname)?.service, `the page's NIP-86 calls to ${calls.href}`).toBe(relaySvc);
  const relayUrl = must(podConfig(objs, 'relay', imageEnv).RELAY_URL, 'the relay RELAY_URL');
  expect(normalizeHttpUrl(calls.href), `NIP-98: the relay accepts only u = RELAY_URL (${relayUrl})`).toBe(normalizeHttpUrl(relayUrl));
  const connect = /(?:^|;)\s*connect-src ([^;]*)/.exec(page.csp)?.[1].split(/\s+/) ?? [];
  expect(connect, `the page's CSP connect-src allows ${calls.origin}`).toContain(calls.origin);
}

/** An overlay's images entries, namespace and patches each change the rendering of its base. */
export function checkOverlayTakesEffect(kustomization: Obj, objs: Obj[], base: Obj[], readPatch: (path: string) => Obj) {
  const images = nonEmpty(
    objs.flatMap(containersOf).map((c) => c.image as string),
    'container images',
  );
  // an images entry that matches nothing is a silent no-op in kustomize
  for (const img of (kustomization.images ?? []) as Obj[]) {
    const want = `${img.newName ?? img.name}${img.digest ? `@${img.digest}` : img.newTag ? `:${img.newTag}` : ''}`;
    for (const i of images) expect(i, `images entry ${img.name} must match the base's image`).toBe(want);
  }
  if (kustomization.namespace !== undefined) checkNamespace(objs, kustomization.namespace);
  // each patch changes something, and a ConfigMap patch keeps the base's other keys
  for (const p of (kustomization.patches ?? []) as Obj[]) {
    const patch = p.path ? readPatch(p.path) : undefined;
    const kind = p.target?.kind ?? patch?.kind;
    const name = p.target?.name ?? patch?.metadata?.name;
    const before = must(named(base, kind, name), `${kind} ${name} in the base`);
    const after = must(named(objs, kind, name), `${kind} ${name} in the overlay`);
    expect(
      { ...after, metadata: { ...after.metadata, namespace: undefined } },
      `patch ${p.path ?? `${kind}/${name}`} changes nothing`,
    ).not.toEqual({
      ...before,
      metadata: { ...before.metadata, namespace: undefined },
    });
    if (kind === 'ConfigMap' && patch) {
      for (const key of Object.keys(before.data)) expect(after.data[key], `ConfigMap key ${key} kept`).toBeDefined();
      for (const [key, v] of Object.entries(patch.data ?? {})) expect(after.data[key], `ConfigMap key ${key} patched`).toBe(v);
    }
  }
}

// ==========================================================================================
// The Dockerfile and the ignore file
// ==========================================================================================

/** What each app's bundle reads beside it at run time, relative to its folder (scripts/build.ts). */
const BUILT_BESIDE: Record<App, string[]> = {
  relay: ['dist/verify-worker.js'],
  admission: ['dist/page/pay.js', 'dist/page/pay.css'],
  dashboard: ['dist/page/dashboard.js', 'dist/page/dashboard.css'],
};
const BUILD_RUN = /\b(pnpm|npm|yarn)\b[^&|;]*(?<![-\w])(build|deploy)(?![-\w])|(?<![-\w])(tsc|esbuild)(?![-\w])/;
/** The stages before the final one that the final stage copies from (directly or not). */
export const buildStages = (m: DockerModel): Stage[] => m.stages.filter((s) => s !== m.final);

/** Multi-stage, every base image pinned to a Node major on Debian (glibc; uWebSockets.js ships glibc binaries), no latest. */
export function checkBaseImages(m: DockerModel) {
  expect(m.stages.length, 'a build stage and a runtime stage').toBeGreaterThanOrEqual(2);
  const external = nonEmpty(
    m.stages.filter((s) => !s.parent),
    'stages FROM an image',
  );
  for (const s of external) {
    expect(s.image, `stage ${s.name ?? s.index}: FROM with unresolved build arguments`).not.toMatch(/\$/);
    const [ref, digest] = s.image.split('@');
    const tag = /:([^/:]+)$/.exec(ref)?.[1];
    expect(tag ?? digest, `stage ${s.name ?? s.index}: ${s.image} is not pinned (no tag or digest)`).toBeDefined();
    expect(tag, `stage ${s.name ?? s.index}: ${s.image} uses latest`).not.toBe('latest');
    expect(ref, `stage ${s.name ?? s.index}: a Debian (glibc) Node 20+ image, not Alpine`).toMatch(
      /^(docker\.io\/(library\/)?)?node:(2\d|[3-9]\d)(\.\d+){0,2}-(bookworm|bullseye|trixie)(-slim)?$/,
    );
  }
  // the final stage takes what it runs from a build stage
  const fromStages = copiesOf(m.final).filter((c) => c.from !== undefined);
  for (const c of nonEmpty(fromStages, 'COPY --from in the final stage'))
    must(stageByName(m, c.from!), `COPY --from=${c.from}: a stage of this Dockerfile`);
}

/** The native signature verifier: built against libsecp256k1-dev, checked, and the runtime library shipped. */
export function checkNativeVerifier(m: DockerModel) {
  const build = buildStages(m).flatMap(runTexts).join('\n');
  for (const pkg of ['build-essential', 'python3', 'libsecp256k1-dev']) expect(build, `the build stage installs ${pkg}`).toContain(pkg);
  const final = runTexts(m.final).join('\n');
  expect(final, 'the runtime stage installs libsecp256k1-1').toMatch(/apt-get install[^\n]*\blibsecp256k1-1\b/);
  expect(final, 'no -dev package at run time').not.toContain('libsecp256k1-dev');
  expect(build, 'the build fails if the native verifier was not built').toMatch(/test -f \S*secp256k1_verify\.node/);
}

/** pnpm 12 (the lockfile's), every install from the lockfile, only the apps' dependency trees, no devDependencies at run time. */
export function checkPnpmInstall(m: DockerModel, lockfile: string) {
  expect(lockfile, 'pnpm-lock.yaml').toMatch(/^lockfileVersion: '9\.0'/m);
  const build = buildStages(m).flatMap(runTexts);
  const pnpmSetup = build.join('\n');
  expect(pnpmSetup, 'pnpm 12 in the build stage').toMatch(
    /(npm install -g pnpm@(\$\{?PNPM_VERSION\}?|12\b)|corepack (enable|prepare pnpm@12))/,
  );
  if (/\$\{?PNPM_VERSION/.test(pnpmSetup)) {
    const args = buildStages(m)
      .flatMap((s) => instructionsOf(s, 'ARG'))
      .map((a) => words(a).join(' '));
    expect(args, 'ARG PNPM_VERSION=12').toContainEqual(expect.stringMatching(/^PNPM_VERSION=12\b/));
  }
  const installs = nonEmpty(
    build.flatMap((r) => r.split(/&&|;/)).filter((c) => /\bpnpm (install|i)\b/.test(c)),
    'pnpm install in the build stages',
  );
  for (const i of installs) {
    expect(i, 'pnpm install from the lockfile').toMatch(/--frozen-lockfile/);
    const filters = [...i.matchAll(/--filter[= ]"?([^"\s]+)"?/g)].map((x) => x[1]);
    if (filters.length)
      expect(filters, 'a filtered install has the apps and their dependencies').toEqual(
        expect.arrayContaining(APPS.map((app) => `@paidrelay/${app}...`)),
      );
  }
  // no devDependencies in what the final stage runs: installed with --prod, or pruned / deployed with --prod
  expect(build.join('\n'), 'production dependencies only (--prod)').toMatch(/\bpnpm\b[^&|;]*\s(--prod|-P|--production)\b/);
}

export function checkIgnoreFile(ignore: IgnoreFile | undefined) {
  const ig = must(ignore, 'the ignore file (Dockerfile.dockerignore next to the Dockerfile, or .dockerignore at the root)');
  for (const p of [
    'node_modules',
    'node_modules/x/index.js',
    'apps/relay/node_modules/x',
    '.git/HEAD',
    'data/pglite/x',
    'packages/secp256k1/build/Release/secp256k1_verify.node',
    'apps/relay/dist/main.js',
    '.env',
    '.env.production',
    'apps/relay/.env',
    'apps/relay/test/a.test.ts',
  ]) {
    expect(ig.ignored(p), `${ig.path} must exclude ${p}`).toBe(true);
  }
  for (const p of [
    'package.json',
    'pnpm-lock.yaml',
    'pnpm-workspace.yaml',
    'apps/relay/src/main.ts',
    'packages/secp256k1/src/verify.cc',
    'packages/secp256k1/binding.gyp',
  ]) {
    expect(ig.ignored(p), `${ig.path} must keep ${p}`).toBe(false);
  }
}

/** Every COPY/ADD source from the build context exists and is sent (not excluded by the ignore file). */
export function checkCopySources(m: DockerModel, ctx: Context) {
  const fromContext = nonEmpty(
    m.stages.flatMap((s) => copiesOf(s, ctx)).filter((c) => c.from === undefined),
    'COPY from the build context',
  );
  for (const c of fromContext) {
    expect(c.ins.getKeyword(), `${c.ins.toString()}: COPY, not ADD`).toBe('COPY');
    for (const src of nonEmpty(c.sources, `${c.ins.toString()} sources`)) {
      expect(src, `${c.ins.toString()}: a path inside the context`).not.toMatch(/^\.\.(\/|$)|^\//);
      const paths = expandSource(ctx, src);
      expect(paths.length, `COPY source ${src || '.'} exists in the context`).toBeGreaterThan(0);
      for (const p of paths) {
        expect(ctx.sent(p) || p === '', `COPY source ${p} is excluded by ${ctx.ignore?.path}`).toBe(true);
        if (ctx.isDir(p)) {
          const files = sentFiles(ctx, p);
          expect(files.length, `COPY source ${p || '.'}: everything in it is ignored`).toBeGreaterThan(0);
          for (const f of ctx.files(p, (d) => d.endsWith('node_modules')).filter((x) => /\/src\/.*\.(ts|js|cc|c|h)$/.test(x))) {
            expect(ctx.sent(f), `${f} is source but excluded by ${ctx.ignore?.path}`).toBe(true);
          }
        }
      }
    }
  }
}

/** The files of the context under `dir` that the builder receives. */
function sentFiles(ctx: Context, dir: string): string[] {
  const prune = (d: string) => !ctx.ignore?.hasExceptions && (ctx.ignore?.ignored(d) ?? false);
  return ctx.files(dir, prune).filter((f) => ctx.sent(f));
}

const SECRET_FILE =
  /(^|\/)(\.env(\..*)?|[^/]*\.(pem|key|p12|pfx|jks)|id_(rsa|dsa|ecdsa|ed25519)[^/]*|\.npmrc|\.netrc|\.pgpass|credentials(\.json)?|[^/]*secrets?\.(json|ya?ml|env|txt))$/i;
const SECRET_NAME_RE = /(SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|API_KEY|NWC_URL|DATABASE_URL)/i;

/** No secret file is copied into any stage, and no secret is set by ENV or ARG. */
export function checkNoSecrets(m: DockerModel, ctx: Context) {
  const copied = m.stages
    .flatMap((s) => copiesOf(s, ctx))
    .filter((c) => c.from === undefined)
    .flatMap((c) => c.sources.flatMap((src) => expandSource(ctx, src)))
    .flatMap((p) => (ctx.isDir(p) ? sentFiles(ctx, p) : ctx.sent(p) ? [p] : []));
  nonEmpty(copied, 'files copied from the build context');
  expect(
    copied.filter((f) => SECRET_FILE.test(f)),
    'secret files copied into the image',
  ).toEqual([]);
  for (const s of m.stages) {
    for (const ins of [...instructionsOf(s, 'ENV'), ...instructionsOf(s, 'ARG')]) {
      for (const w of words(ins)) {
        const [name, value] = w.split('=');
        if (value !== undefined && value !== '')
          expect(SECRET_NAME_RE.test(name), `${ins.getKeyword()} ${name} sets a secret in the image`).toBe(false);
      }
    }
  }
}

/**
 * The workspace packages the apps need: their package.json before the install, their sources in
 * the build stage, and the native verifier's sources before the install (its install script
 * builds it).
 */
export function checkWorkspaceCopied(m: DockerModel, ctx: Context) {
  const byName = new Map<string, string>();
  for (const parent of ['apps', 'packages']) {
    for (const f of ctx.files(parent, (d) => d.split('/').length > 2).filter((x) => /^[^/]+\/[^/]+\/package\.json$/.test(x))) {
      byName.set((JSON.parse(ctx.read(f)) as Obj).name, posix.dirname(f));
    }
  }
  const needed = new Set<string>();
  const visit = (name: string) => {
    const dir = byName.get(name);
    if (!dir || needed.has(dir)) return;
    needed.add(dir);
    const pkg = JSON.parse(ctx.read(`${dir}/package.json`)) as Obj;
    for (const [dep, v] of Object.entries(pkg.dependencies ?? {})) if (String(v).startsWith('workspace:')) visit(dep);
  };
  for (const app of APPS) visit(`@paidrelay/${app}`);
  expect(needed.size, 'workspace packages the apps need').toBeGreaterThanOrEqual(8);

  const stage = must(
    buildStages(m).find((s) => runTexts(s).some((r) => /\bpnpm (install|i)\b/.test(r))),
    'the build stage that runs pnpm install',
  );
  // the sources are needed where the build runs (the last stage that builds), or else where the install runs
  const srcStage =
    buildStages(m)
      .filter((s) => runTexts(s).some((r) => BUILD_RUN.test(r)))
      .at(-1) ?? stage;
  const installAt = stage.instructions.findIndex((i) => i.getKeyword() === 'RUN' && /\bpnpm (install|i)\b/.test(words(i).join(' ')));
  const wd = workdirAt(stage, installAt);
  const from = (file: string, before = Infinity) => originOf(m, stage, posix.join(wd, file), ctx, before);
  const isCopied = (file: string, before = Infinity) => {
    const o = from(file, before);
    return o.kind === 'context' && o.path === file;
  };
  for (const f of ['package.json', 'pnpm-workspace.yaml', 'pnpm-lock.yaml'])
    expect(isCopied(f, installAt), `${f} before the install`).toBe(true);
  for (const dir of needed) {
    expect(isCopied(`${dir}/package.json`, installAt), `${dir}/package.json before the install`).toBe(true);
    for (const f of nonEmpty(ctx.files(`${dir}/src`), `${dir}/src`)) {
      const o = originOf(m, srcStage, posix.join(workdirAt(srcStage), f), ctx);
      expect(o.kind === 'context' && o.path === f, `${f} in the build stage ${srcStage.name ?? srcStage.index}`).toBe(true);
    }
  }
  const sec = 'packages/secp256k1';
  const secPkg = JSON.parse(ctx.read(`${sec}/package.json`)) as Obj;
  const script = must(/node (\S+)/.exec(secPkg.scripts?.install ?? '')?.[1], `${sec} install script`);
  const gyp = JSON.parse(ctx.read(`${sec}/binding.gyp`)) as Obj;
  for (const f of [script, 'binding.gyp', ...gyp.targets.flatMap((t: Obj) => t.sources)])
    expect(isCopied(`${sec}/${f}`, installAt), `${sec}/${f} before the install`).toBe(true);
}

/** The final stage runs as a numeric non-root USER, NODE_ENV=production, the apps' ports, DATA_DIR writable by that user. */
export function checkRuntimeUser(m: DockerModel) {
  const user = must(stageUser(m.final), 'USER in the final stage (the base image runs as root)');
  expect(user, 'a numeric USER, so Kubernetes can check runAsNonRoot').toMatch(/^\d+(:\d+)?$/);
  expect(Number(user.split(':')[0]), 'USER is not root').not.toBe(0);
  const env = stageEnv(m.final);
  expect(env.NODE_ENV, 'ENV NODE_ENV').toBe('production');
  const dataDir = must(env.DATA_DIR, 'ENV DATA_DIR');
  const uid = user.split(':')[0];
  const owned =
    runTexts(m.final).some(
      (r) =>
        new RegExp(`chown (-R )?${uid}(:\\d+)? (\\S+ )*${dataDir}\\b`).test(r) ||
        new RegExp(`install -d[^&;]*-o ${uid}\\b[^&;]*${dataDir}`).test(r),
    ) || copiesOf(m.final).some((c) => c.dest === dataDir && c.flags.chown?.split(':')[0] === uid);
  expect(owned, `DATA_DIR ${dataDir} is owned by ${user}`).toBe(true);
  const exposed = instructionsOf(m.final, 'EXPOSE')
    .flatMap(words)
    .map((p) => Number(p.split('/')[0]));
  expect(exposed.sort(), 'EXPOSE the ports of the apps').toEqual(APPS.map((app) => DEFAULTS[PORT_VAR[app]]).sort());
  for (const app of APPS) expect(Number(env[PORT_VAR[app]] ?? DEFAULTS[PORT_VAR[app]]), PORT_VAR[app]).toBe(DEFAULTS[PORT_VAR[app]]);
}

/**
 * The entry point runs node on a file the image has: copied from the build context (TypeScript
 * run with a loader that is a production dependency), or built (JavaScript that a build stage
 * produced from the package's sources with its build script); `exec`, so SIGTERM reaches node.
 * The relay is the default (CMD).
 */
export function checkEntrypoint(m: DockerModel, ctx: Context) {
  const cmd = must(instructionsOf(m.final, 'CMD').at(-1), 'CMD');
  expect(words(cmd), 'the relay by default').toEqual(['relay']);
  for (const app of APPS) {
    const start = appStart(m, ctx, [app]);
    expect(start.exec, `${app}: node is exec'd, so SIGTERM reaches it`).toBe(true);
    const { preload, script } = nodeInvocation(start.argv);
    const file = posix.resolve(start.cwd, must(script, `${app}: the script node runs (${start.argv.join(' ')})`));
    const origin = originOf(m, m.final, file, ctx);
    const packageOf = (stage: Stage, path: string) => {
      const rel = posix.relative(workdirAt(stage), path);
      expect(rel, `${path} is under the build stage's WORKDIR`).not.toMatch(/^\.\./);
      const parts = rel.split('/');
      for (let n = parts.length - 1; n > 0; n--) {
        const dir = parts.slice(0, n).join('/');
        const pj = originOf(m, stage, posix.join(workdirAt(stage), dir, 'package.json'), ctx);
        if (pj.kind === 'context') return { dir, rest: parts.slice(n).join('/'), pkg: JSON.parse(ctx.read(pj.path)) as Obj };
      }
      throw new Error(`${path}: in no workspace package`);
    };
    if (origin.kind === 'context') {
      expect(origin.path, `${app}: the script is the app's`).toMatch(new RegExp(`^apps/${app}/`));
      expect(ctx.isFile(origin.path), `${origin.path} exists`).toBe(true);
      if (/\.[mc]?ts$/.test(origin.path)) {
        const loaders = preload.filter((p) => /^(tsx|ts-node)/.test(p));
        expect(loaders.length, `${app}: a TypeScript entry needs a loader (--import tsx)`).toBeGreaterThan(0);
        const { pkg } = packageOf(m.final, file);
        for (const l of loaders)
          expect(pkg.dependencies?.[l.split('/')[0]], `${app}: ${l} is a production dependency of ${pkg.name}`).toBeDefined();
      }
    } else {
      expect(origin.kind, `${app}: ${file} is neither copied from the context nor built in a stage`).toBe('stage');
      if (origin.kind !== 'stage') return;
      expect(origin.stage, `${app}: ${file} must come from a build stage, not the base image`).not.toBe(m.final);
      expect(origin.path, `${app}: node runs JavaScript`).toMatch(/\.[mc]?js$/);
      const runs = runTexts(origin.stage).join('\n');
      expect(runs, `${app}: stage ${origin.stage.name ?? origin.stage.index} runs a build`).toMatch(BUILD_RUN);
      // `pnpm build <app>...` builds only the apps it names (scripts/build.ts)
      for (const b of runs.matchAll(/\bpnpm (?:run )?build((?:[ \t]+[a-z][\w-]*)*)/g)) {
        const named = b[1].trim().split(/\s+/).filter(Boolean);
        if (named.length) expect(named, `${app}: \`pnpm build ${named.join(' ')}\` builds the ${app}`).toContain(app);
      }
      // and what the bundle reads beside it at run time is built into the image too
      const appDir = file.slice(0, file.indexOf(`/apps/${app}/`) + `/apps/${app}`.length);
      for (const f of BUILT_BESIDE[app]) {
        const o = originOf(m, m.final, posix.join(appDir, f), ctx);
        expect(
          o.kind === 'stage' && o.stage !== m.final && BUILD_RUN.test(runTexts(o.stage).join('\n')),
          `${app}: ${f} is built into the image`,
        ).toBe(true);
      }
      const { dir, rest, pkg } = packageOf(origin.stage, origin.path);
      expect(dir, `${app}: the built file belongs to apps/${app}`).toBe(`apps/${app}`);
      const root = JSON.parse(ctx.read('package.json')) as Obj;
      expect(pkg.scripts?.build ?? root.scripts?.build, `${app}: ${dir} has a build script`).toBeDefined();
      const source = posix.join(dir, rest.replace(/^(dist|build|lib|out)\//, 'src/').replace(/\.([mc]?)js$/, '.$1ts'));
      const srcOrigin = originOf(m, origin.stage, posix.join(workdirAt(origin.stage), source), ctx);
      expect(
        srcOrigin.kind === 'context' && srcOrigin.path === source,
        `${app}: ${source}, the source of ${rest}, is in the build stage`,
      ).toBe(true);
    }
  }
}

/** A HEALTHCHECK on /healthz for plain Docker, or else liveness and readiness probes on every container of the manifests. */
export function checkHealth(m: DockerModel, objs: Obj[]) {
  const hc = instructionsOf(m.final, 'HEALTHCHECK').at(-1);
  const none = hc && words(hc)[0]?.toUpperCase() === 'NONE';
  if (hc && !none) {
    expect(words(hc)[0]?.toUpperCase(), 'HEALTHCHECK CMD').toBe('CMD');
    expect(hc.toString(), 'the HEALTHCHECK hits /healthz').toContain('/healthz');
  } else {
    for (const c of nonEmpty(
      deploymentsOf(objs).flatMap(containersOf),
      'containers (no HEALTHCHECK in the image: the manifests must probe)',
    )) {
      must(c.livenessProbe, `${c.name} livenessProbe (the image has no HEALTHCHECK)`);
      must(c.readinessProbe, `${c.name} readinessProbe (the image has no HEALTHCHECK)`);
    }
  }
}
