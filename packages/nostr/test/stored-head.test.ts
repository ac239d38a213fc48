import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventToJson, storedHead, type NostrEvent } from '../src/index.ts';

const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
const event = fc.record({
  id: hex64,
  pubkey: hex64,
  created_at: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  kind: fc.integer({ min: 0, max: 65535 }),
  tags: fc.array(fc.array(fc.string(), { maxLength: 3 }), { maxLength: 3 }),
  content: fc.string(),
  sig: fc.stringMatching(/^[0-9a-f]{128}$/),
}) as fc.Arbitrary<NostrEvent>;

describe('storedHead', () => {
  it('reads what JSON.parse reads of every text eventToJson writes', () => {
    fc.assert(
      fc.property(event, (ev) => {
        const raw = eventToJson(ev);
        const parsed = JSON.parse(raw) as NostrEvent;
        expect(storedHead(raw)).toEqual({ id: parsed.id, pubkey: parsed.pubkey, created_at: parsed.created_at, kind: parsed.kind });
      }),
      { numRuns: 500 },
    );
  });

  it('gives up on a text written any other way, so that the caller parses it', () => {
    const ev: NostrEvent = {
      id: 'a'.repeat(64),
      pubkey: 'b'.repeat(64),
      created_at: 1700000000,
      kind: 1,
      tags: [],
      content: 'x',
      sig: 'c'.repeat(128),
    };
    const raw = eventToJson(ev);
    expect(storedHead(raw)).toEqual({ id: ev.id, pubkey: ev.pubkey, created_at: 1700000000, kind: 1 });
    const others = [
      JSON.stringify(ev, null, 1), // whitespace
      JSON.stringify({ pubkey: ev.pubkey, id: ev.id, created_at: 1, kind: 1, tags: [], content: '', sig: ev.sig }), // key order
      raw.replace('"created_at":1700000000', '"created_at":01700000000'), // a leading zero
      raw.replace('"created_at":1700000000', '"created_at":1.5e9'),
      raw.replace('"created_at":1700000000', '"created_at":-1'),
      raw.replace('"kind":1', '"kind":"1"'),
      raw.replace('"created_at":1700000000', `"created_at":${'9'.repeat(16)}`), // past safe integers
      raw.replace('"kind":1,"tags"', '"kind":1,"content":"x","tags"'),
      raw.slice(0, 100), // cut short
      '',
      '{"id":"',
    ];
    for (const text of others) expect(storedHead(text), text).toBeUndefined();
  });
});
