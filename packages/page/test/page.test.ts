import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendAsset, servePage, writePage, type PageSource } from '../src/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'page-test-'));
writeFileSync(join(dir, 'part.ts'), "export const greet = (who: string): string => 'hello ' + who;\n");
writeFileSync(join(dir, 'main.ts'), "import { greet } from './part.ts';\ndocument.title = greet('page');\n");
writeFileSync(join(dir, 'a.css'), 'body {  color : red ; }\n');
writeFileSync(join(dir, 'b.css'), '.x { margin: 0px; }\n');
const SOURCE: PageSource = { name: 'demo', entry: join(dir, 'main.ts'), styles: ['./a.css', './b.css'], distDir: join(dir, 'dist') };

describe('a page from source', () => {
  it('bundles the entry with its imports and the styles in order, under content-hashed URLs', async () => {
    const { js, css } = await servePage(SOURCE, '/base');
    expect(js.body).toContain('hello');
    expect(js.body).not.toContain('import');
    expect(css.body.indexOf('red')).toBeLessThan(css.body.indexOf('.x'));
    expect(js.url).toMatch(/^\/base\/demo\.js\?v=[0-9a-f]{10}$/);
    expect(css.url).toMatch(/^\/base\/demo\.css\?v=[0-9a-f]{10}$/);
    expect(gunzipSync(js.gzip).toString()).toBe(js.body);
  });

  it('writes what pnpm build ships: the same bundle in distDir', async () => {
    await writePage(SOURCE);
    const { js, css } = await servePage(SOURCE, '');
    expect(readFileSync(join(dir, 'dist', 'demo.js'), 'utf8')).toBe(js.body);
    expect(readFileSync(join(dir, 'dist', 'demo.css'), 'utf8')).toBe(css.body);
  });
});

describe('sendAsset', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    const { js } = await servePage(SOURCE, '');
    server = createServer((req, res) => sendAsset(req, res, js, { 'X-Extra': 'yes' }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('sends gzip to a client that accepts it, plain text to one that does not, no body to HEAD; cacheable for long', async () => {
    const gz = await fetch(base, { headers: { 'accept-encoding': 'gzip' }, signal: AbortSignal.timeout(5000) });
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    expect(gz.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(gz.headers.get('vary')).toBe('Accept-Encoding');
    expect(gz.headers.get('x-extra')).toBe('yes');
    expect(await gz.text()).toContain('hello'); // fetch decodes it
    const plain = await fetch(base, { headers: { 'accept-encoding': 'identity' }, signal: AbortSignal.timeout(5000) });
    expect(plain.headers.get('content-encoding')).toBeNull();
    expect(plain.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await plain.text()).toContain('hello');
    const head = await fetch(base, { method: 'HEAD', signal: AbortSignal.timeout(5000) });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });
});
