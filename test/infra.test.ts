/**
 * Checks of the deployment files in infra/ (no Docker engine here; kubectl renders offline):
 *
 * - every YAML file parses the way Kubernetes reads it (YAML 1.1, no duplicate keys), and every
 *   one under infra/k8s is used by a kustomization;
 * - the base and every overlay are rendered by `kubectl kustomize` (kubectl's built-in kustomize:
 *   the objects `kubectl apply -k` would send); without kubectl the rendering tests are skipped
 *   with a warning, and fail in CI (CI=true);
 * - every rendered object is validated against the Kubernetes OpenAPI schema (kubernetes-models:
 *   types and required fields) and for unknown fields (typos);
 * - selectors, HPA target, Services, Ingress backends, probes, ports, env names, secret
 *   references, security settings and routing agree with each other, with the image and with
 *   the apps' sources and config schema;
 * - the dashboard behind the Ingress: the real dashboard server, configured as its pod is, serves
 *   a page whose assets reach the dashboard Service and whose NIP-86 calls reach the relay's;
 * - the Dockerfile (parsed by dockerfile-ast) and its ignore file (matched by
 *   @balena/dockerignore): pinned Debian base images, non-root USER, every COPY source exists in
 *   the context and is not ignored, no secrets, the entry point runs node on a file the image
 *   has (copied, or built in a build stage), a HEALTHCHECK or probes.
 *
 * The checks are functions in test/infra/checks.ts; "the checks can fail" runs some of them on
 * broken copies (a copy of infra/k8s rendered by kubectl, a changed Dockerfile or ignore file) and
 * expects them to throw.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBaseImages,
  checkContainerCommands,
  checkCopySources,
  checkDashboard,
  checkEntrypoint,
  checkEnvAndSecrets,
  checkHealth,
  checkHpa,
  checkIgnoreFile,
  checkIngress,
  checkNamespace,
  checkNativeVerifier,
  checkNoSecrets,
  checkOverlayTakesEffect,
  checkPnpmInstall,
  checkPodSecurity,
  checkProbes,
  checkProductionConfig,
  checkRenderedObjects,
  checkResources,
  checkRuntimeUser,
  checkSchemas,
  checkScrapeAnnotations,
  checkSelectors,
  checkServicesAndPdbs,
  checkShutdown,
  checkStringValues,
  checkWorkspaceCopied,
  type DashboardPage,
  imageFacts,
  SECRET_KEYS,
  SECRET_NAME,
  servedDashboard,
} from './infra/checks.ts';
import { Context, findIgnoreFile, parseDockerfile, parseIgnoreFile } from './infra/docker.ts';
import { kubectlVersion, kustomize, named, type Obj, parseYamlFile, ROOT, schemaProblems } from './infra/k8s.ts';

const INFRA = join(ROOT, 'infra');
const K8S = join(INFRA, 'k8s');
const BASE = join(K8S, 'base');
const OVERLAYS = join(K8S, 'overlays');
const DOCKERFILE = 'infra/docker/Dockerfile';
const read = (path: string) => readFileSync(path, 'utf8');

function walk(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((name) => (statSync(join(dir, name)).isDirectory() ? walk(join(dir, name)) : [join(dir, name)]))
    .sort();
}

// ------------------------------------------------------------------------------------------
// Inputs
// ------------------------------------------------------------------------------------------

const yamlFiles = walk(INFRA).filter((f) => /\.ya?ml$/.test(f));
const overlayDirs = readdirSync(OVERLAYS)
  .map((d) => join(OVERLAYS, d))
  .filter((d) => statSync(d).isDirectory());
const renderDirs = [BASE, ...overlayDirs];

const repo = new Context(ROOT);
const ignoreFile = findIgnoreFile(repo, DOCKERFILE);
const ctx = repo.withIgnore(ignoreFile);
const docker = parseDockerfile(read(join(ROOT, DOCKERFILE)), DOCKERFILE);
const image = imageFacts(docker, ctx);

/** The HTTP servers of the apps (the paths each serves). */
const sources = {
  relay: read(join(ROOT, 'apps/relay/src/http.ts')),
  admission: read(join(ROOT, 'apps/admission/src/app.ts')),
  dashboard: read(join(ROOT, 'apps/dashboard/src/server.ts')),
};

/** The namespace a kustomization sets (the nearest one up its resources), undefined if none. */
function namespaceOf(dir: string): string | undefined {
  const [k] = parseYamlFile(join(dir, 'kustomization.yaml'));
  if (k.namespace) return k.namespace;
  for (const r of (k.resources ?? []) as string[]) {
    const p = resolve(dir, r);
    if (statSync(p).isDirectory()) {
      const ns = namespaceOf(p);
      if (ns) return ns;
    }
  }
  return undefined;
}

// kubectl: rendering needs it. Skipped with a warning on a machine without it; CI must have it.
const KUBECTL = await kubectlVersion();
const IN_CI = !!process.env.CI;
const NO_KUBECTL =
  'kubectl (with its built-in kustomize) is not on PATH: the manifests cannot be rendered. ' +
  'Install kubectl (see infra/README.md, "Checking the manifests") or set KUBECTL to its path.';
if (!KUBECTL && !IN_CI) console.warn(`WARNING: ${NO_KUBECTL} The rendering tests of test/infra.test.ts are skipped.`);

type Rendered = { objs: Obj[] } | { error: Error };
const rendered = new Map<string, Rendered>();
if (KUBECTL) {
  await Promise.all(
    renderDirs.map(async (dir) => {
      try {
        rendered.set(dir, { objs: await kustomize(dir) });
      } catch (error) {
        rendered.set(dir, { error: error as Error });
      }
    }),
  );
}
/** The rendering of a kustomization directory; throws the kubectl error if it did not render. */
function render(dir: string): Obj[] {
  const r = rendered.get(dir);
  if (!r) throw new Error(NO_KUBECTL);
  if ('error' in r) throw r.error;
  return structuredClone(r.objs);
}

// ------------------------------------------------------------------------------------------
// Files
// ------------------------------------------------------------------------------------------

describe('infra: YAML files', () => {
  it('there are manifests to check', () => {
    expect(yamlFiles.length).toBeGreaterThanOrEqual(10);
    expect(existsSync(join(BASE, 'kustomization.yaml'))).toBe(true);
    expect(overlayDirs.map((d) => relative(OVERLAYS, d))).toContain('example');
  });

  it.each(yamlFiles.map((f) => [relative(ROOT, f), f]))('%s parses as YAML 1.1 with no duplicate keys', (_, file) => {
    const docs = parseYamlFile(file);
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      expect(typeof d.apiVersion).toBe('string');
      expect(typeof d.kind).toBe('string');
      expect(d.kind, 'no Secret is committed: secrets are only referenced').not.toBe('Secret');
    }
  });

  it('every YAML file under infra/k8s is used by a kustomization', () => {
    const used = new Set<string>();
    for (const k of yamlFiles.filter((f) => f.endsWith('kustomization.yaml'))) {
      used.add(k);
      const [doc] = parseYamlFile(k);
      const refs = [
        ...(doc.resources ?? []),
        ...(doc.components ?? []),
        ...(doc.patchesStrategicMerge ?? []),
        ...((doc.patches ?? []) as Obj[]).map((p) => p.path).filter(Boolean),
      ] as string[];
      for (const r of refs) used.add(resolve(dirname(k), r));
    }
    const unused = yamlFiles.filter((f) => f.startsWith(K8S) && !used.has(f));
    expect(unused.map((f) => relative(ROOT, f))).toEqual([]);
  });
});

describe('infra: kubectl', () => {
  it('kubectl with kustomize is available (required in CI)', (t) => {
    if (!KUBECTL) {
      if (IN_CI) throw new Error(`CI: ${NO_KUBECTL}`);
      t.skip(NO_KUBECTL);
    }
    expect(KUBECTL).toMatch(/kustomize v?\d/);
  });
});

// ------------------------------------------------------------------------------------------
// Rendered manifests
// ------------------------------------------------------------------------------------------

describe.skipIf(!KUBECTL).each(renderDirs.map((dir) => ({ name: relative(ROOT, dir), dir })))(
  'infra: kubectl kustomize $name',
  ({ dir }) => {
    const objs = () => render(dir);

    it('renders the expected objects, no Secret', () => checkRenderedObjects(objs()));
    it('every object is a known apiVersion/kind with a valid name, and passes the Kubernetes schema without unknown fields', () =>
      checkSchemas(objs()));
    it('label, annotation and ConfigMap values are strings', () => checkStringValues(objs()));
    it('the namespace of the kustomization is on every namespaced object, and its Namespace is rendered', () =>
      checkNamespace(objs(), namespaceOf(dir)));
    it('Deployment selectors match their pod templates and no two Deployments share pods', () => checkSelectors(objs()));
    it('each Service and PDB selects the pods of exactly one Deployment, Service ports reach container ports, PDBs allow evictions', () =>
      checkServicesAndPdbs(objs()));
    it('the relay HPA scales an existing Deployment on CPU, from at least 3 replicas, and owns its replica count', () => checkHpa(objs()));
    it('probes use the paths and ports the apps serve', () => checkProbes(objs(), sources, image.env));
    it('Prometheus scrapes /metrics on the container port of the apps that serve it, and only those', () =>
      checkScrapeAnnotations(objs(), sources));
    it('containers keep the image entry point and start the right app of the image', () => checkContainerCommands(objs(), image));
    it('every env name is a config variable, and secrets come only from the documented Secret', () => checkEnvAndSecrets(objs()));
    it('the configuration each pod sees is valid for production, with ADMIN_PUBKEYS as the relay reads it', () =>
      checkProductionConfig(objs(), image.env));
    it("pods run as the image's non-root user with a read-only root filesystem and nothing writable mounted", () =>
      checkPodSecurity(objs(), image));
    it('every container has CPU and memory requests and limits, requests within limits', () => checkResources(objs()));
    it('shutdown drains: a preStop sleep shorter than the grace period, so the load balancer lets go first', () => checkShutdown(objs()));
    it('the Ingress sends the relay host to the relay and every public admission route to the admission service', () =>
      checkIngress(objs(), sources.admission));
    it('the image has a HEALTHCHECK on /healthz or every container is probed', () => checkHealth(docker, objs()));
    it('the dashboard, configured as its pod is, serves a page that works behind the Ingress and calls the relay', async () =>
      checkDashboard(objs(), image.env, await servedDashboard(objs(), image.env)));
  },
);

describe.skipIf(!KUBECTL)('infra: overlays', () => {
  it.each(overlayDirs.map((d) => [relative(ROOT, d), d]))('%s: its images, namespace and patches take effect', (_, dir) => {
    const [k] = parseYamlFile(join(dir, 'kustomization.yaml'));
    checkOverlayTakesEffect(k, render(dir), render(BASE), (p) => parseYamlFile(join(dir, p))[0]);
  });
});

// ------------------------------------------------------------------------------------------
// The image
// ------------------------------------------------------------------------------------------

describe('infra: Dockerfile', () => {
  it('has build and runtime stages on pinned Debian (glibc) Node images, not Alpine, the runtime copying from a build stage', () =>
    checkBaseImages(docker));
  it('builds the native verifier against libsecp256k1-dev and ships the runtime library', () => checkNativeVerifier(docker));
  it('installs with pnpm 12 from the lockfile, the apps, no devDependencies at run time', () =>
    checkPnpmInstall(docker, read(join(ROOT, 'pnpm-lock.yaml'))));
  it('every COPY source exists in the build context and is not excluded by the ignore file', () => checkCopySources(docker, ctx));
  it('copies no secret and sets none', () => checkNoSecrets(docker, ctx));
  it('the ignore file keeps local state, build output and secrets out of the build context', () => checkIgnoreFile(ignoreFile));
  it('copies the manifest and sources of every workspace package the apps need, and the verifier sources before the install', () =>
    checkWorkspaceCopied(docker, ctx));
  it('runs as a numeric non-root user with NODE_ENV=production, DATA_DIR writable', () => checkRuntimeUser(docker));
  it('its entry point execs node on a file the image has (copied or built), for the relay (default), admission and dashboard', () =>
    checkEntrypoint(docker, ctx));
  it('the ignore file BuildKit uses is the one next to the Dockerfile', () => expect(ignoreFile?.path).toBe(`${DOCKERFILE}.dockerignore`));
});

describe('infra: README', () => {
  const readme = read(join(INFRA, 'README.md'));

  it('documents the build, the secret, applying, scaling and how to get kubectl for the checks', () => {
    expect(readme).toContain('docker build -f infra/docker/Dockerfile');
    expect(readme).toContain('kubectl apply -k infra/k8s/base');
    expect(readme).toContain('kubectl apply -k infra/k8s/overlays/example');
    expect(readme).toMatch(new RegExp(`kubectl (-n \\S+ )?create secret generic ${SECRET_NAME}`));
    for (const k of SECRET_KEYS) expect(readme).toContain(`--from-literal=${k}=`);
    expect(readme).toMatch(/kubectl scale|kubectl patch hpa|minReplicas/);
    expect(readme).toContain('kubectl kustomize');
    expect(readme).toMatch(/Checking the manifests/);
  });

  it('describes every manifest of the base', () => {
    const [k] = parseYamlFile(join(BASE, 'kustomization.yaml'));
    for (const r of k.resources as string[]) expect(readme, r).toContain(r);
  });
});

// ------------------------------------------------------------------------------------------
// Negative tests: each check below is run on a deliberately broken input and must throw.
// ------------------------------------------------------------------------------------------

/** A copy of infra/k8s in a temporary directory, with `edits` (path relative to infra/k8s -> new text). */
const tmpDirs: string[] = [];
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});
function brokenK8s(edits: Record<string, (text: string) => string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'paidrelay-k8s-'));
  tmpDirs.push(dir);
  cpSync(K8S, dir, { recursive: true });
  for (const [file, edit] of Object.entries(edits)) {
    const p = join(dir, file);
    const next = edit(read(p));
    expect(next, `the edit of ${file} changed nothing`).not.toBe(read(p));
    writeFileSync(p, next);
  }
  return dir;
}
const replaceOnce = (from: string | RegExp, to: string) => (text: string) => {
  expect(text).toMatch(from);
  return text.replace(from, to);
};
const mutate = (objs: Obj[], kind: string, name: string, f: (o: Obj) => void) => {
  const copy = structuredClone(objs);
  f(named(copy, kind, name)!);
  return copy;
};
const dockerWith = (edit: (text: string) => string) => parseDockerfile(edit(read(join(ROOT, DOCKERFILE))), DOCKERFILE);

describe.skipIf(!KUBECTL)('infra: the checks can fail (broken manifests, rendered by kubectl)', () => {
  let page: DashboardPage;
  beforeAll(async () => {
    page = await servedDashboard(render(BASE), image.env);
  });

  it('an overlay images entry that matches no image (a silent no-op in kustomize) fails the overlay check', async () => {
    const dir = brokenK8s({ 'overlays/example/kustomization.yaml': replaceOnce('- name: ghcr.io/example/paidrelay', '- name: paidrelay') });
    const overlay = join(dir, 'overlays/example');
    const [k] = parseYamlFile(join(overlay, 'kustomization.yaml'));
    const objs = await kustomize(overlay);
    expect(() => checkOverlayTakesEffect(k, objs, render(BASE), (p) => parseYamlFile(join(overlay, p))[0])).toThrow(
      /must match the base's image/,
    );
  });

  it('a writable root filesystem in the base fails the pod security check of the base and the overlay', async () => {
    const dir = brokenK8s({ 'base/relay-deployment.yaml': replaceOnce('readOnlyRootFilesystem: true', 'readOnlyRootFilesystem: false') });
    for (const d of ['base', 'overlays/example']) {
      const objs = await kustomize(join(dir, d));
      expect(() => checkPodSecurity(objs, image), d).toThrow(/relay readOnlyRootFilesystem/);
    }
  });

  it('a typo in a field name fails the schema check; an unquoted number in the ConfigMap fails the string check', async () => {
    const dir = brokenK8s({
      'base/admission-deployment.yaml': replaceOnce('imagePullPolicy: IfNotPresent', 'imagePullPolcy: IfNotPresent'),
      'base/configmap.yaml': replaceOnce('PORT: "7777"', 'PORT: 7777'),
    });
    const objs = await kustomize(join(dir, 'base'));
    await expect(checkSchemas(objs)).rejects.toThrow();
    expect(await schemaProblems(named(objs, 'Deployment', 'paidrelay-admission')!)).toContainEqual(
      expect.stringMatching(/unknown field .*imagePullPolcy/),
    );
    expect(() => checkStringValues(objs)).toThrow(/data\.PORT/);
  });

  it('a patch of an object that is not there makes the rendering itself fail', async () => {
    const dir = brokenK8s({ 'overlays/example/relay-hpa-patch.yaml': replaceOnce('name: paidrelay-relay', 'name: paidrelay-rellay') });
    await expect(kustomize(join(dir, 'overlays/example'))).rejects.toThrow(/kubectl kustomize/);
  });

  it('checks that used to pass when a thing was missing now fail: no startupProbe, no HPA, a PDB that blocks drains, a missing Namespace', () => {
    const base = render(BASE);
    const overlay = render(overlayDirs.find((d) => d.endsWith('example'))!);
    expect(() =>
      checkProbes(
        mutate(base, 'Deployment', 'paidrelay-relay', (d) => delete d.spec.template.spec.containers[0].startupProbe),
        sources,
        image.env,
      ),
    ).toThrow(/relay startupProbe is missing/);
    expect(() => checkHpa(base.filter((o) => o.kind !== 'HorizontalPodAutoscaler'))).toThrow(/HorizontalPodAutoscalers/);
    expect(() => checkHpa(mutate(base, 'Deployment', 'paidrelay-relay', (d) => (d.spec.replicas = 3)))).toThrow(
      /spec.replicas while an HPA/,
    );
    expect(() =>
      checkServicesAndPdbs(mutate(base, 'PodDisruptionBudget', 'paidrelay-admission', (p) => (p.spec.minAvailable = '100%'))),
    ).toThrow(/evictions allowed/);
    expect(() =>
      checkNamespace(
        overlay.filter((o) => o.kind !== 'Namespace'),
        'paidrelay',
      ),
    ).toThrow(/Namespace paidrelay is missing/);
    expect(() => checkNamespace(base, 'paidrelay')).toThrow(/namespaces of the namespaced objects/);
    expect(() =>
      checkSelectors(mutate(base, 'Deployment', 'paidrelay-relay', (d) => delete d.spec.template.spec.topologySpreadConstraints)),
    ).toThrow(/topologySpreadConstraints/);
    expect(() =>
      checkHealth(
        dockerWith(replaceOnce(/HEALTHCHECK[\s\S]*?\]\n/, '')),
        mutate(base, 'Deployment', 'paidrelay-admission', (d) => delete d.spec.template.spec.containers[0].livenessProbe),
      ),
    ).toThrow(/admission livenessProbe/);
  });

  it('the dashboard under a path of the relay host fails: its page and assets are at absolute paths, the relay owns them there', async () => {
    const dir = brokenK8s({
      'base/dashboard-ingress.yaml': (t) => replaceOnce('path: /', 'path: /admin')(t).replaceAll('admin.example.com', 'relay.example.com'),
    });
    const objs = await kustomize(join(dir, 'base'));
    expect(() => checkDashboard(objs, image.env, page)).toThrow(
      /relay\.example\.com\/\S*: expected 'paidrelay-relay' to be 'paidrelay-dashboard'/,
    );
  });

  it('the dashboard page calling a relay URL the Ingress does not route, or one the relay does not accept for NIP-98', async () => {
    const base = render(BASE);
    const at = (relayUrl: string) => ({ ...page, html: page.html.replace(/data-relay-url="[^"]*"/, `data-relay-url="${relayUrl}"`) });
    expect(() => checkDashboard(base, image.env, at('https://elsewhere.example.com/'))).toThrow(/TLS for elsewhere|NIP-86 calls/);
    expect(() => checkDashboard(base, image.env, at('http://relay.example.com/'))).toThrow(/over TLS/);
    expect(() => checkDashboard(base, image.env, at('https://relay.example.com/nip86'))).toThrow(/NIP-98/);
    expect(() => checkDashboard(base, image.env, { ...page, csp: "default-src 'self'; connect-src 'self'" })).toThrow(/connect-src/);
    // without RELAY_URL the dashboard falls back to http://localhost:<PORT>/, which no Ingress serves
    const noRelayUrl = mutate(base, 'ConfigMap', 'paidrelay-config', (c) => delete c.data.RELAY_URL);
    const fallback = await servedDashboard(noRelayUrl, image.env);
    expect(() => checkDashboard(base, image.env, fallback)).toThrow(/over TLS/);
  });

  it('the dashboard given a secret, a /readyz it does not serve, scrape annotations, a port it does not listen on', () => {
    const base = render(BASE);
    const dash = (f: (d: Obj) => void) => mutate(base, 'Deployment', 'paidrelay-dashboard', f);
    const secret = { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: SECRET_NAME, key: 'DATABASE_URL' } } };
    expect(() => checkEnvAndSecrets(dash((d) => (d.spec.template.spec.containers[0].env = [secret])))).toThrow(/the dashboard secrets/);
    expect(() =>
      checkProbes(
        dash((d) => (d.spec.template.spec.containers[0].readinessProbe.httpGet.path = '/readyz')),
        sources,
        image.env,
      ),
    ).toThrow(/dashboard readinessProbe path/);
    expect(() =>
      checkScrapeAnnotations(
        dash(
          (d) =>
            (d.spec.template.metadata.annotations = {
              'prometheus.io/scrape': 'true',
              'prometheus.io/port': '7779',
              'prometheus.io/path': '/metrics',
            }),
        ),
        sources,
      ),
    ).toThrow(/serves no \/metrics/);
    const otherPort = mutate(base, 'ConfigMap', 'paidrelay-config', (c) => (c.data.DASHBOARD_PORT = '8080'));
    expect(() => checkProbes(otherPort, sources, image.env)).toThrow(/dashboard startupProbe port = DASHBOARD_PORT/);
  });

  it('a /tmp emptyDir mounted again, a bad ADMIN_PUBKEYS entry, no ADMIN_PUBKEYS key', () => {
    const base = render(BASE);
    const withTmp = mutate(base, 'Deployment', 'paidrelay-relay', (d) => {
      d.spec.template.spec.volumes = [{ name: 'tmp', emptyDir: {} }];
      d.spec.template.spec.containers[0].volumeMounts = [{ name: 'tmp', mountPath: '/tmp' }];
    });
    expect(() => checkPodSecurity(withTmp, image)).toThrow(/relay: writable mounts/);
    const badAdmin = mutate(base, 'ConfigMap', 'paidrelay-config', (c) => (c.data.ADMIN_PUBKEYS = 'npub1notakey'));
    expect(() => checkProductionConfig(badAdmin, image.env)).toThrow(/ADMIN_PUBKEYS as the relay reads it/);
    const noAdmin = mutate(base, 'ConfigMap', 'paidrelay-config', (c) => delete c.data.ADMIN_PUBKEYS);
    expect(() => checkProductionConfig(noAdmin, image.env)).toThrow(/ADMIN_PUBKEYS in the ConfigMap/);
  });

  it('a schema type error (a string port) is reported', async () => {
    const base = render(BASE);
    const broken = mutate(base, 'Service', 'paidrelay-relay', (s) => (s.spec.ports[0].port = '7777'));
    expect(await schemaProblems(named(broken, 'Service', 'paidrelay-relay')!)).not.toEqual([]);
  });
});

describe('infra: the checks can fail (broken Dockerfile, ignore file, entry point)', () => {
  it('no USER, or USER root, in the final stage', () => {
    expect(() => checkRuntimeUser(dockerWith(replaceOnce(/^USER .*$/m, '')))).toThrow(/USER in the final stage .*is missing/);
    expect(() => checkRuntimeUser(dockerWith(replaceOnce(/^USER .*$/m, 'USER 0:0')))).toThrow(/USER is not root/);
    expect(() => checkRuntimeUser(dockerWith(replaceOnce(/^USER .*$/m, 'USER node')))).toThrow(/numeric USER/);
  });

  it('an unpinned, latest or Alpine base image', () => {
    expect(() => checkBaseImages(dockerWith(replaceOnce(/^ARG NODE_IMAGE=.*$/m, 'ARG NODE_IMAGE=node')))).toThrow(/not pinned/);
    expect(() => checkBaseImages(dockerWith(replaceOnce(/^ARG NODE_IMAGE=.*$/m, 'ARG NODE_IMAGE=node:latest')))).toThrow(/uses latest/);
    expect(() => checkBaseImages(dockerWith(replaceOnce(/^ARG NODE_IMAGE=.*$/m, 'ARG NODE_IMAGE=node:20-alpine')))).toThrow(/not Alpine/);
  });

  it('a COPY source that does not exist, or that the ignore file excludes', () => {
    const missing = dockerWith(replaceOnce(/^(FROM .* AS runtime)$/m, '$1\nCOPY infra/docker/no-such-file /x'));
    expect(() => checkCopySources(missing, ctx)).toThrow(/no-such-file exists in the context/);
    const ignored = dockerWith(replaceOnce(/^(FROM .* AS runtime)$/m, '$1\nCOPY infra/README.md /x'));
    expect(() => checkCopySources(ignored, ctx)).toThrow(/infra\/README.md is excluded/);
  });

  it('a secret copied into the image (with an ignore file that lets it through), or set by ENV', () => {
    const leaky = ctx.with({ 'infra/docker/.env': 'RELAY_SECRET_KEY=00' }).withIgnore(parseIgnoreFile('**/node_modules\n.git\n'));
    const copiesEnv = dockerWith(replaceOnce(/^(FROM .* AS runtime)$/m, '$1\nCOPY infra/docker /etc/paidrelay'));
    expect(() => checkNoSecrets(copiesEnv, leaky)).toThrow(/secret files copied/);
    expect(() => checkNoSecrets(dockerWith(replaceOnce(/^(ENV NODE_ENV=production)/m, 'ENV RELAY_SECRET_KEY=abc\n$1')), ctx)).toThrow(
      /RELAY_SECRET_KEY sets a secret/,
    );
  });

  it('an ignore file that lets node_modules, native build output or .env into the context', () => {
    expect(() => checkIgnoreFile(parseIgnoreFile('.git\n**/.env\n', 'x'))).toThrow(/must exclude node_modules/);
    expect(() => checkIgnoreFile(parseIgnoreFile(`${read(join(ROOT, ignoreFile!.path))}\n!packages/secp256k1/build\n`))).toThrow(
      /secp256k1_verify.node/,
    );
    expect(() => checkIgnoreFile(undefined)).toThrow(/the ignore file .* is missing/);
  });

  it('an entry point that runs a file the image does not have, does not exec, or names no app', () => {
    const script = read(join(ROOT, 'infra/docker/entrypoint.sh'));
    const startLine = /exec node (.*)main\.([mc]?[jt]s)/;
    expect(script).toMatch(startLine);
    const noFile = ctx.with({ 'infra/docker/entrypoint.sh': script.replace(startLine, 'exec node $1missing.$2') });
    expect(() => checkEntrypoint(docker, noFile)).toThrow(/exists|neither copied|is in the build stage/);
    const noExec = ctx.with({ 'infra/docker/entrypoint.sh': script.replace(startLine, 'node $1main.$2') });
    expect(() => checkEntrypoint(docker, noExec)).toThrow(/exec'd/);
    const noBranch = ctx.with({ 'infra/docker/entrypoint.sh': script.replace(/^\s*admission\)/m, '  admin)') });
    expect(() => checkEntrypoint(docker, noBranch)).toThrow(/runs no node|no case branch/);
    expect(() => checkEntrypoint(dockerWith(replaceOnce(/^CMD \["relay"\]$/m, 'CMD ["admission"]')), ctx)).toThrow(/the relay by default/);
    const noDashboard = ctx.with({ 'infra/docker/entrypoint.sh': script.replace(/^\s*dashboard\)/m, '  dashbord)') });
    expect(() => checkEntrypoint(docker, noDashboard)).toThrow(/dashboard.*runs no node/);
  });

  it('an image that builds, installs or copies no dashboard', () => {
    expect(() =>
      checkEntrypoint(dockerWith(replaceOnce('pnpm build relay admission dashboard', 'pnpm build relay admission')), ctx),
    ).toThrow(/builds the dashboard/);
    expect(() => checkEntrypoint(dockerWith(replaceOnce(/^COPY --from=build \/app\/apps\/dashboard\/dist .*$/m, '')), ctx)).toThrow(
      /dashboard: stage deps runs a build/,
    );
    const onlyMain = 'COPY --from=build /app/apps/dashboard/dist/main.js /app/apps/dashboard/dist/main.js';
    expect(() => checkEntrypoint(dockerWith(replaceOnce(/^COPY --from=build \/app\/apps\/dashboard\/dist .*$/m, onlyMain)), ctx)).toThrow(
      /dashboard: dist\/page\/dashboard.js is built into the image/,
    );
    expect(() =>
      checkPnpmInstall(
        dockerWith((t) => t.replaceAll(' --filter "@paidrelay/dashboard..."', '')),
        read(join(ROOT, 'pnpm-lock.yaml')),
      ),
    ).toThrow(/the apps and their dependencies/);
    expect(() => checkWorkspaceCopied(dockerWith(replaceOnce(/^COPY apps\/dashboard\/src .*$/m, '')), ctx)).toThrow(
      /apps\/dashboard\/src\/.* in the build stage/,
    );
    expect(() => checkRuntimeUser(dockerWith(replaceOnce('EXPOSE 7777 7778 7779', 'EXPOSE 7777 7778')))).toThrow(/EXPOSE the ports/);
  });

  it('a production build passes the entry point check, and fails it when the build stage does not build', () => {
    // the shape of a production image: install, `pnpm build`, prune, node on apps/<app>/dist/main.js
    const built = `
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build && pnpm prune --prod
FROM node:20-bookworm-slim AS runtime
WORKDIR /app
COPY --from=build /app /app
COPY --chmod=0755 infra/docker/entrypoint.sh /usr/local/bin/paidrelay
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/paidrelay"]
CMD ["relay"]
`;
    const entry = `#!/bin/sh
set -eu
app="\${1:-relay}"
case "$app" in
  relay) exec node apps/relay/dist/main.js ;;
  admission)
    cd /app/apps/admission
    exec node dist/main.js
    ;;
  dashboard)
    cd /app/apps/dashboard
    exec node dist/main.js
    ;;
  *) exec "$app" "$@" ;;
esac
`;
    const withoutBuild = Object.fromEntries(
      ['package.json', 'apps/relay/package.json', 'apps/admission/package.json', 'apps/dashboard/package.json'].map((f) => {
        const pkg = JSON.parse(read(join(ROOT, f))) as Obj;
        const { build: _, ...scripts } = pkg.scripts ?? {};
        return [f, JSON.stringify({ ...pkg, scripts })];
      }),
    );
    const prodCtx = ctx.with({ 'infra/docker/entrypoint.sh': entry });
    const model = parseDockerfile(built);
    checkEntrypoint(model, prodCtx);
    expect(() => checkEntrypoint(parseDockerfile(built.replace(' && pnpm build', '')), prodCtx)).toThrow(/runs a build/);
    expect(() => checkEntrypoint(model, prodCtx.with(withoutBuild))).toThrow(/has a build script/);
    expect(() =>
      checkEntrypoint(
        parseDockerfile(built.replace('COPY --from=build /app /app', 'COPY --from=build /app/node_modules /app/node_modules')),
        prodCtx,
      ),
    ).toThrow(/base image|neither copied/);
  });
});
