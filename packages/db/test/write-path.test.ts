/**
 * The group commit's statements as they go to the database: the JSON texts of a batch travel as
 * one parameter cut apart by Postgres (an array only when a text has a line break), and the
 * statements are prepared once per connection. Whichever way a text travels, it is stored byte
 * for byte.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { getEventById, storeEvents, type Database, type StoreItem } from '../src/index.ts';
import { author, backends, mk, truncateAll, type Opened } from './backends.ts';

const NOW = 1_700_000_000;

/** The same event written with whitespace and line breaks between its tokens (valid JSON, not what the relay writes). */
function pretty(item: StoreItem): StoreItem {
  return { event: item.event, raw: JSON.stringify(item.event, null, 2) };
}

describe.each(backends)('write path on $name', (backend) => {
  let opened: Opened;
  let db: Database;

  beforeAll(async () => {
    opened = await backend.open();
    db = opened.db;
    await db.migrate();
  });
  afterAll(async () => {
    await opened?.cleanup();
  });
  beforeEach(async () => {
    await truncateAll(db);
  });

  const a = author();
  const awkward = [
    'line one\nline two', // escaped in the JSON text: no line break in it
    'quotes " and \\ backslashes \\n and \\\\n',
    'unicode \u00e9 \u{1f600} \u2028 \u2029 and a tab\t',
    '',
  ];

  // First, on a pool whose connections have prepared nothing yet.
  it.skipIf(backend.name !== 'postgres')('prepares the statements of a group commit, the JSON texts as one parameter', async () => {
    const batch = Array.from({ length: 5 }, (_, i) => mk(a, { content: `prepared ${i}`, tags: [['t', 'p']] }));
    // In one transaction, so the statements and the look at them share a connection.
    const statements = await db.kysely.transaction().execute(async (trx) => {
      await storeEvents(trx, batch, NOW);
      const { rows } = await sql<{ statement: string }>`SELECT statement FROM pg_prepared_statements`.execute(trx);
      return rows.map((r) => r.statement);
    });
    const insert = statements.filter((s) => s.includes('INSERT INTO events'));
    expect(insert).toHaveLength(1);
    expect(insert[0]).toContain('string_to_array');
    expect(statements.some((s) => s.includes('pg_advisory_xact_lock'))).toBe(true);
    expect(statements.some((s) => s.includes('FROM deletions'))).toBe(true);
  });

  it('stores every JSON text byte for byte, one event or many, compact or with line breaks', async () => {
    const compact = awkward.map((content) => mk(a, { content, tags: [['t', 'x']] }));
    const one = mk(a, { content: 'alone' });
    expect(await storeEvents(db.kysely, [one], NOW)).toEqual([{ status: 'stored' }]);
    expect(await storeEvents(db.kysely, compact, NOW)).toEqual(compact.map(() => ({ status: 'stored' })));
    // A batch with one text that has a line break goes as an array, the others with it.
    const mixed = [mk(a, { content: 'before' }), pretty(mk(a, { content: 'pretty' })), mk(a, { content: 'after' })];
    expect(mixed[1].raw).toContain('\n');
    expect(await storeEvents(db.kysely, mixed, NOW)).toEqual(mixed.map(() => ({ status: 'stored' })));
    for (const item of [one, ...compact, ...mixed]) expect(await getEventById(db.kysely, item.event.id)).toBe(item.raw);
  });
});
