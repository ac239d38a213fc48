// usage: node e2e.mjs ws://127.0.0.1:PORT  (run with cwd where ws + nostr-tools resolve)
import WebSocket from 'ws';
import { finalizeEvent, generateSecretKey } from 'nostr-tools/pure';
const url = process.argv[2];
const ws = new WebSocket(url);
const ev = finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'hello from the build e2e' }, generateSecretKey());
const ok = await new Promise((resolve, reject) => {
  ws.on('open', () => ws.send(JSON.stringify(['EVENT', ev])));
  ws.on('message', (m) => { const msg = JSON.parse(m.toString()); if (msg[0] === 'OK') resolve(msg); });
  ws.on('error', reject);
  setTimeout(() => reject(new Error('no OK')), 10000);
});
ws.close();
console.log('OK message:', JSON.stringify(ok));
const payUrl = /(https?:\/\/\S+)$/.exec(ok[3])?.[1];
if (!payUrl) throw new Error('no pay URL');
const page = await fetch(payUrl);
const html = await page.text();
const js = /src="([^"]*pay\.js[^"]*)"/.exec(html)?.[1];
const css = /href="([^"]*pay\.css[^"]*)"/.exec(html)?.[1];
const base = new URL(payUrl);
const jsr = await fetch(new URL(js, base)); const cssr = await fetch(new URL(css, base));
console.log('pay page', page.status, html.length, 'bytes;', js, jsr.status, jsr.headers.get('content-type'), (await jsr.text()).length, 'bytes;', css, cssr.status, (await cssr.text()).length, 'bytes');
if (page.status !== 200 || jsr.status !== 200 || cssr.status !== 200) process.exit(1);
