import fc from 'fast-check';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClientMessage, type NostrEvent } from '@paidrelay/nostr';
import { newKey, RawClient, sign, startTestRelay, type TestRelay } from './harness.ts';

/**
 * The relay over real WebSockets against every kind of bad client message: it always answers
 * (NOTICE, OK, CLOSED, EOSE, COUNT...) or closes the socket cleanly, stays up, and a connection
 * opened before the fuzzing still publishes and reads afterwards. Also: the message size limit
 * is in bytes of the frame, whatever characters it holds.
 */

const backend = process.env.TEST_DATABASE_URL ? 'postgres' : 'pglite';
if (process.env.CI && !process.env.TEST_DATABASE_URL) throw new Error('CI must set TEST_DATABASE_URL');
const MAX = 131072; // the default MAX_MESSAGE_LENGTH

/** How uWS ends a connection it refuses: 1006 (no close frame: too big, bad UTF-8 text), or a close frame. */
const SERVER_CLOSES = [1006, 1007, 1008, 1009];

type Frame = { data: string | Buffer; binary?: boolean; what: string };

/** Counterexamples print as their short description, not megabytes of frame. */
function described(f: Frame): Frame {
  const what = f.what.length > 300 ? f.what.slice(0, 300) + '…' : f.what;
  return Object.assign(f, { what, [fc.toStringMethod]: () => `${f.binary ? 'binary ' : ''}${what}` });
}

/** A client that keeps every message and how the socket ended. */
class Wire {
  messages: unknown[][] = [];
  closed: { code: number; reason: string } | undefined;
  private listeners: (() => void)[] = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      expect(isBinary).toBe(false);
      this.messages.push(JSON.parse(data.toString()) as unknown[]);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => undefined);
  }
  private wake() {
    for (const l of this.listeners.splice(0)) l();
  }
  static open(url: string): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const w = new Wire(ws);
      ws.once('open', () => resolve(w));
      ws.once('error', reject);
    });
  }
  send(f: Frame) {
    this.ws.send(f.data, { binary: f.binary ?? false });
  }
  /** Resolves when pred holds (checked on every message or close), or rejects after ms. */
  until(pred: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.messages).slice(0, 500)}`)),
        ms,
      );
      const check = () => {
        if (pred()) {
          clearTimeout(t);
          resolve();
        } else this.listeners.push(check);
      };
      this.listeners.push(check);
    });
  }
  close() {
    this.ws.terminate();
  }
}

let relay: TestRelay;
let keeper: RawClient;

beforeAll(async () => {
  // The fuzzer sends a few hundred REQ/COUNT a second from one address: lift the per-address
  // limits (their refusals are still accepted as answers below).
  relay = await startTestRelay(backend, {
    RATE_REQS_PER_IP: '100000',
    RATE_REQS_BURST_PER_IP: '100000',
    RATE_EVENTS_PER_IP: '100000',
    RATE_EVENTS_BURST_PER_IP: '100000',
  });
  keeper = await RawClient.open(relay.url); // opened before any fuzzing, checked at the end
});
afterAll(async () => {
  keeper?.close();
  await relay?.stop();
});

/** An EVENT frame of exactly `bytes` bytes, its content made of `ch` (a multi-byte character). */
function eventFrameOfBytes(sk: Uint8Array, ch: string, bytes: number): { ev: NostrEvent; frame: string } {
  const created_at = Math.floor(Date.now() / 1000);
  const build = (content: string) => {
    const ev = sign(sk, { content, created_at });
    return { ev, frame: JSON.stringify(['EVENT', ev]) };
  };
  const base = Buffer.byteLength(build('').frame);
  const each = Buffer.byteLength(ch);
  const n = Math.floor((bytes - base) / each);
  const r = build(ch.repeat(n) + 'a'.repeat(bytes - base - n * each));
  expect(Buffer.byteLength(r.frame)).toBe(bytes);
  return r;
}

async function publishesAndReads(c: RawClient, content: string): Promise<void> {
  const k = newKey();
  const ev = sign(k.sk, { content });
  c.send(['EVENT', ev]);
  expect(await c.ok(ev.id)).toEqual(['OK', ev.id, true, '']);
  const { events, end } = await c.req(`r-${ev.id.slice(0, 8)}`, { ids: [ev.id] });
  expect(end[0]).toBe('EOSE');
  expect(events).toEqual([ev]);
}

describe(`message size is counted in bytes (${backend})`, () => {
  it.each([
    ['3-byte', '€'],
    ['4-byte', '😀'],
  ])('%s characters: exactly the limit is stored, one byte over is a NOTICE and the connection stays usable', async (_n, ch) => {
    const c = await RawClient.open(relay.url);
    const { sk } = newKey();
    const under = eventFrameOfBytes(sk, ch, MAX);
    c.send(under.frame);
    expect(await c.ok(under.ev.id)).toEqual(['OK', under.ev.id, true, '']);
    for (const extra of [1, 3, 4, 1000]) {
      const over = eventFrameOfBytes(sk, ch, MAX + extra);
      // Fewer UTF-16 units than the limit: a check on string length lets it through.
      expect(over.frame.length).toBeLessThan(MAX);
      c.send(over.frame);
      expect(await c.notice()).toEqual(['NOTICE', `invalid: message is larger than ${MAX} bytes`]);
      expect((await c.req('gone', { ids: [over.ev.id] })).events).toEqual([]);
    }
    await publishesAndReads(c, 'still usable after an oversized frame');
    c.close();
  });

  it('the frame from the report (196,960 bytes of 3-byte characters) is refused', async () => {
    const c = await RawClient.open(relay.url);
    const over = eventFrameOfBytes(newKey().sk, '€', 196_960);
    c.send(over.frame);
    expect(await c.notice()).toEqual(['NOTICE', `invalid: message is larger than ${MAX} bytes`]);
    expect((await c.req('gone', { ids: [over.ev.id] })).events).toEqual([]);
    c.close();
  });

  it('a grossly oversized frame (over twice the limit) closes that socket; others are unaffected', async () => {
    const w = await Wire.open(relay.url);
    w.send({ data: JSON.stringify(['EVENT', { content: '€'.repeat(MAX) }]), what: 'huge' });
    await w.until(() => w.closed !== undefined, 10_000, 'close');
    // uWS drops the TCP connection without a close frame (the client sees 1006).
    expect(SERVER_CLOSES).toContain(w.closed!.code);
    expect(w.messages.filter((m) => m[0] !== 'AUTH')).toEqual([]);
    await publishesAndReads(keeper, 'after a huge frame elsewhere');
  });

  it('invalid UTF-8 in a binary frame is a clear NOTICE; valid UTF-8 JSON in a binary frame is read', async () => {
    const w = await Wire.open(relay.url);
    await w.until(() => w.messages.length > 0); // the AUTH challenge
    w.messages = [];
    for (const bytes of [
      [0xff, 0xfe],
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [...Buffer.from('["REQ","a",{"#t":["'), 0xe2, 0x82, ...Buffer.from('"]}]')],
    ]) {
      w.send({ data: Buffer.from(bytes), binary: true, what: 'bad utf-8' });
      await w.until(() => w.messages.length > 0, 5000, 'NOTICE');
      expect(w.messages.shift()).toEqual(['NOTICE', 'invalid: message is not valid UTF-8 text']);
    }
    w.send({ data: Buffer.from('["COUNT","c",{"ids":["' + '0'.repeat(64) + '"]}]'), binary: true, what: 'binary json' });
    await w.until(() => w.messages.length > 0, 5000, 'COUNT');
    expect(w.messages.shift()).toEqual(['COUNT', 'c', { count: 0 }]);
    expect(w.closed).toBeUndefined();
    w.close();
  });

  it('invalid UTF-8 in a text frame closes that socket (uWS checks text frames); others are unaffected', async () => {
    const w = await Wire.open(relay.url);
    w.send({ data: Buffer.from([0x5b, 0x22, 0xff, 0x22, 0x5d]), binary: false, what: 'bad text' });
    await w.until(() => w.closed !== undefined, 5000, 'close');
    expect(SERVER_CLOSES).toContain(w.closed!.code);
    await publishesAndReads(keeper, 'after bad UTF-8 elsewhere');
  });

  it('10,000-deep nesting in every position is a NOTICE or CLOSED, not a crash', async () => {
    const c = await RawClient.open(relay.url);
    const deepA = '['.repeat(10_000) + ']'.repeat(10_000);
    const deepO = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000);
    c.send(deepA);
    expect((await c.notice())[1]).toMatch(/^invalid: /);
    c.send(`["EVENT",${deepO}]`);
    expect((await c.notice())[1]).toMatch(/^invalid: /);
    c.send(`["EVENT",{"id":"${'a'.repeat(64)}","tags":${deepA}}]`);
    expect((await c.ok('a'.repeat(64)))[3]).toMatch(/^invalid: /);
    c.send(`["REQ","deep",${deepO}]`);
    expect(await c.next((m) => m[0] === 'CLOSED')).toEqual(['CLOSED', 'deep', expect.stringMatching(/^unsupported: |^invalid: /)]);
    c.send(`["REQ",${deepA},{}]`);
    expect((await c.notice())[1]).toMatch(/^invalid: /);
    await publishesAndReads(c, 'after deep nesting');
    c.close();
  });
});

describe(`handlers never let a failure escape (${backend})`, () => {
  let failing: TestRelay;
  beforeAll(async () => {
    // A write policy that throws: stands for any unexpected failure inside EVENT handling.
    failing = await startTestRelay(
      backend,
      {},
      {
        hooks: [
          {
            writePolicies: [
              (ev) => {
                if (ev.content === 'boom') throw new Error('policy exploded');
                return undefined;
              },
            ],
          },
        ],
      },
    );
  });
  afterAll(async () => {
    await failing?.stop();
  });

  it('a handler that throws is answered OK false "error: ..." and the relay keeps serving', async () => {
    const c = await RawClient.open(failing.url);
    const ev = sign(newKey().sk, { content: 'boom' });
    c.send(['EVENT', ev]);
    expect(await c.ok(ev.id)).toEqual(['OK', ev.id, false, 'error: could not process the event, try again']);
    await publishesAndReads(c, 'fine after the failure');
    c.close();
  });

  it('a tag filter value with U+0000 (never indexed) is CLOSED "unsupported:", not a database error', async () => {
    const c = await RawClient.open(relay.url);
    for (const [verb, id] of [
      ['REQ', 'n1'],
      ['COUNT', 'n2'],
    ]) {
      c.send(`["${verb}","${id}",{"#t":["a\\u0000b"]}]`);
      expect(await c.next((m) => m[1] === id)).toEqual([
        'CLOSED',
        id,
        'unsupported: filter "#t" has a value containing U+0000, which this relay does not index',
      ]);
    }
    await publishesAndReads(c, 'fine after NUL filters');
    c.close();
  });
});

// ---------------------------------------------------------------------------------------------
// The fuzzer

const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
/** Tokens that are not JSON numbers, or are numbers no field accepts. */
const numberish = fc.constantFrom(
  'NaN',
  'Infinity',
  '-Infinity',
  'undefined',
  '1e400',
  '-1e400',
  '1e-400',
  '-0',
  '0.5',
  '1.0',
  '01',
  '0x10',
  '+1',
  '.5',
  '123456789012345678901234567890',
  '9007199254740993',
  '-9007199254740993',
  '4294967296',
  '65536',
  '-1',
  '1e21',
  '2e308',
  'null',
  'true',
  'false',
  '"1"',
  '[]',
  '{}',
  '[1]',
  '"NaN"',
);
const jsonValue = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 2, arbitrary: numberish },
  { weight: 1, arbitrary: hex64.map((h) => JSON.stringify(h)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '"\\u0000"',
      '"\\ud800"',
      '"\\udfff\\ud800"',
      '""',
      '"' + 'x'.repeat(100) + '"',
      '"__proto__"',
      '{"__proto__":{"a":1}}',
      '{"constructor":1}',
    ),
  },
);
const goodFilter = fc.oneof(
  fc.constant('{}'),
  hex64.map((h) => `{"ids":["${h}"]}`),
  fc.constant('{"kinds":[1],"limit":1}'),
  fc.constant('{"#t":["x"],"since":0,"until":2000000000}'),
);
/** A filter with a fuzzed value in one position, bare or inside the list. */
const brokenFilter = fc
  .tuple(
    fc.constantFrom('ids', 'authors', 'kinds', '#t', '#e', '#p', '#d', 'since', 'until', 'limit', '#tt', 'search', '', '__proto__'),
    jsonValue,
    fc.boolean(),
  )
  .map(([k, v, wrap]) => `{${JSON.stringify(k)}:${wrap ? `[${v}]` : v}}`);
const VERBS = ['EVENT', 'REQ', 'COUNT', 'CLOSE', 'AUTH'] as const;

/** A template event; each fuzz case may break one field of it. */
const template = sign(newKey().sk, { content: 'template', tags: [['t', 'x']] });
const FIELDS = ['id', 'pubkey', 'created_at', 'kind', 'tags', 'content', 'sig'] as const;
const brokenEvent = fc
  .record({
    field: fc.constantFrom(...FIELDS, 'extra'),
    how: fc.constantFrom('replace', 'delete', 'tagValue'),
    value: jsonValue,
  })
  .map(({ field, how, value }) => {
    const parts = FIELDS.filter((f) => !(how === 'delete' && f === field)).map((f) => {
      if (f === field && how === 'replace') return `"${f}":${value}`;
      if (f === 'tags' && how === 'tagValue') return `"tags":[["t",${value}],[${value}]]`;
      return `"${f}":${JSON.stringify(template[f])}`;
    });
    if (field === 'extra') parts.push(`"extra":${value}`);
    return `{${parts.join(',')}}`;
  });

const messageFrame: fc.Arbitrary<Frame> = fc
  .record({
    verb: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...VERBS).map((v) => `"${v}"`) }, { weight: 1, arbitrary: jsonValue }),
    rest: fc.array(
      fc.oneof(
        jsonValue,
        goodFilter,
        brokenFilter,
        brokenEvent,
        hex64.map((h) => `"${h}"`),
      ),
      { maxLength: 5 },
    ),
  })
  .map(({ verb, rest }) => {
    const data = `[${[verb, ...rest].join(',')}]`;
    return { data, what: data.slice(0, 300) };
  });

const garbageText: fc.Arbitrary<Frame> = fc
  .string({ unit: 'binary', maxLength: 300 })
  .map((s) => ({ data: s, what: JSON.stringify(s.slice(0, 100)) }));
const jsonish: fc.Arbitrary<Frame> = fc
  .array(
    fc.constantFrom(
      '[',
      ']',
      '{',
      '}',
      ',',
      ':',
      '"',
      '\\',
      'EVENT',
      'REQ',
      'COUNT',
      'CLOSE',
      'AUTH',
      '1',
      'e',
      '-',
      'null',
      ' ',
      '\u0000',
      '\ud800',
      'tags',
      'ids',
    ),
    { maxLength: 60 },
  )
  .map((a) => ({ data: a.join(''), what: JSON.stringify(a.join('')) }));
const binaryFrame: fc.Arbitrary<Frame> = fc
  .oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    // A valid REQ with bad bytes (a stray continuation, a truncated sequence, 0xff) in a value.
    fc
      .tuple(fc.uint8Array({ maxLength: 4 }), fc.constantFrom(0x80, 0xc0, 0xe0, 0xf0, 0xf8, 0xff))
      .map(([a, b]) => Buffer.concat([Buffer.from('["REQ","s",{"#t":["'), Buffer.from(a), Buffer.from([b]), Buffer.from('"]}]')])),
    fc.string({ maxLength: 100 }).map((s) => Buffer.from(`["COUNT","b",${JSON.stringify({ '#t': [s] })}]`)),
  )
  .map((data) => ({ data, binary: true, what: `binary ${data.toString('hex').slice(0, 200)}` }));
const deep: fc.Arbitrary<Frame> = fc
  .record({ n: fc.integer({ min: 500, max: 10_000 }), shape: fc.constantFrom('array', 'object', 'event', 'filter', 'tags', 'mixed') })
  .map(({ n, shape }) => {
    const arr = '['.repeat(n) + ']'.repeat(n);
    const obj = '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    const data = {
      array: arr,
      object: `[${obj}]`,
      event: `["EVENT",${obj}]`,
      filter: `["REQ","d",${obj}]`,
      tags: `["EVENT",{"id":"${'a'.repeat(64)}","tags":[${arr}]}]`,
      mixed: `["COUNT","d",{"#t":${'[{'.repeat(n / 2)}${'}]'.repeat(n / 2)}}]`,
    }[shape];
    return { data, what: `${shape} nested ${n} deep` };
  });
const huge: fc.Arbitrary<Frame> = fc
  .record({
    n: fc.integer({ min: 100, max: 20_000 }),
    shape: fc.constantFrom('filters', 'kinds', 'ids', 'tags', 'values', 'elements', 'subid'),
  })
  .map(({ n, shape }) => {
    const h = '"' + 'b'.repeat(64) + '"';
    const data = {
      filters: `["REQ","h",${Array(n).fill('{}').join(',')}]`,
      kinds: `["REQ","h",{"kinds":[${Array(n).fill('1').join(',')}]}]`,
      ids: `["COUNT","h",{"ids":[${Array(Math.min(n, 1900)).fill(h).join(',')}]}]`,
      tags: `["EVENT",${JSON.stringify({ ...template, tags: Array(n).fill(['t', 'x']) })}]`,
      values: `["REQ","h",{"#t":[${Array(n).fill('"v"').join(',')}]},{"#p":[${Array(Math.min(n, 1000)).fill(h).join(',')}]}]`,
      elements: `[${Array(n).fill('"EVENT"').join(',')}]`,
      subid: `["REQ","${'s'.repeat(n)}",{}]`,
    }[shape];
    return { data, what: `huge ${shape} ${n}` };
  });

/** Raw bytes in a text frame: uWS closes the socket when they are not UTF-8. */
const rawText: fc.Arbitrary<Frame> = fc
  .uint8Array({ minLength: 1, maxLength: 100 })
  .map((a) => ({ data: Buffer.from(a), binary: false, what: `text bytes ${Buffer.from(a).toString('hex')}` }));
/** Around the limit and its double: NOTICE up to twice the limit, a closed socket beyond. */
const sized: fc.Arbitrary<Frame> = fc
  .record({ bytes: fc.constantFrom(MAX - 1, MAX, MAX + 1, 2 * MAX, 2 * MAX + 1, 3 * MAX), ch: fc.constantFrom('a', '€', '😀') })
  .map(({ bytes, ch }) => {
    const head = '["REQ","z",{"#t":["';
    const tail = '"]}]';
    const room = bytes - Buffer.byteLength(head + tail);
    const n = Math.floor(room / Buffer.byteLength(ch));
    const data = head + ch.repeat(n) + 'a'.repeat(room - n * Buffer.byteLength(ch)) + tail;
    return { data, what: `${Buffer.byteLength(data)} bytes of ${ch}` };
  });

const frame = fc
  .oneof(
    { weight: 1, arbitrary: rawText },
    { weight: 1, arbitrary: sized },
    { weight: 6, arbitrary: messageFrame },
    { weight: 2, arbitrary: garbageText },
    { weight: 2, arbitrary: jsonish },
    { weight: 2, arbitrary: binaryFrame },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: huge },
  )
  .map(described);

/** Is this frame a CLOSE that parses (the one message NIP-01 gives no answer to)? */
function silentClose(f: Frame): boolean {
  const text = typeof f.data === 'string' ? f.data : f.data.toString('utf8');
  if (Buffer.byteLength(text) > MAX) return false;
  const m = parseClientMessage(text, relay.ctx.limits);
  return m.type === 'CLOSE';
}

describe(`wire fuzz over real WebSockets (${backend})`, () => {
  const runs = Number(process.env.WIRE_FUZZ_RUNS ?? 300);
  let probes = 0;

  it('every client message gets an answer or a clean close, and the relay keeps serving', async () => {
    const closes = new Map<number, number>();
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 3 }), async (frames) => {
        const w = await Wire.open(relay.url);
        try {
          await w.until(() => w.messages.some((m) => m[0] === 'AUTH'), 5000, 'AUTH challenge');
          w.messages = [];
          for (const f of frames) {
            const probe = `probe-${++probes}`;
            const before = w.messages.length;
            w.send(f);
            // A valid COUNT after each frame: its answer shows the frame was fully handled.
            w.send({ data: `["COUNT","${probe}",{"ids":["${'0'.repeat(64)}"]}]`, what: 'probe' });
            const isProbe = (m: unknown[]) => m[1] === probe;
            const answered = () => w.messages.slice(before).some((m) => !isProbe(m));
            const silent = silentClose(f);
            try {
              await w.until(
                () => w.closed !== undefined || (w.messages.some(isProbe) && (silent || answered())),
                15_000,
                `answer to ${f.what}`,
              );
            } catch (err) {
              throw new Error(`${(err as Error).message}`);
            }
            if (w.closed) {
              expect(SERVER_CLOSES, `close ${JSON.stringify(w.closed)} after ${f.what}`).toContain(w.closed.code);
              closes.set(w.closed.code, (closes.get(w.closed.code) ?? 0) + 1);
              return;
            }
            for (const m of w.messages.slice(before)) {
              if (!isProbe(m)) seen.add(String(m[0]));
              expect(['NOTICE', 'OK', 'CLOSED', 'EOSE', 'COUNT', 'EVENT', 'AUTH'], JSON.stringify(m)).toContain(m[0]);
              // Every refusal carries a NIP-01 machine-readable prefix.
              const text = m[0] === 'NOTICE' ? m[1] : m[0] === 'OK' && m[2] === false ? m[3] : m[0] === 'CLOSED' ? m[2] : undefined;
              // `error:` is for a failing database or worker; here they are healthy, so it would be a bug.
              if (text !== undefined)
                expect(String(text), f.what).toMatch(
                  /^(invalid|unsupported|rate-limited|blocked|restricted|auth-required|duplicate|pow): /,
                );
            }
            const answer = w.messages.find(isProbe)!;
            if (answer[0] === 'CLOSED') expect(answer[2]).toMatch(/^rate-limited: /);
            else expect(answer).toEqual(['COUNT', probe, { count: 0 }]);
          }
        } finally {
          w.close();
        }
      }),
      { numRuns: runs, endOnFailure: true },
    );
    // The fuzzer reaches every kind of answer, and some sockets were refused outright.
    expect([...seen].sort()).toEqual(expect.arrayContaining(['CLOSED', 'COUNT', 'EOSE', 'NOTICE', 'OK']));
    expect([...closes.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  }, 600_000);

  it('afterwards the connection opened before the fuzzing, and a new one, publish and read', async () => {
    await publishesAndReads(keeper, 'keeper survives the fuzzing');
    const c = await RawClient.open(relay.url);
    await publishesAndReads(c, 'a new connection after the fuzzing');
    const health = await fetch(relay.url.replace('ws://', 'http://') + '/healthz');
    expect(health.status).toBe(200);
    c.close();
  });
});
