import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, postgresBinDir, startCluster } from './cluster.ts';
import { newKey, RawClient, sign, startTestRelay, until, type TestRelay } from './harness.ts';

/**
 * READ_DATABASE_URL: a real streaming replica (its own primary and standby, started here). REQ
 * and COUNT are answered from the replica while the primary takes the writes; a replica that
 * dies sends the reads back to the primary, and they return to it once it is up again.
 *
 * Where a read was served is told by pausing replay on the replica: what the primary commits
 * meanwhile is there only, so a REQ that does not see it was answered by the replica.
 */

const binDir = postgresBinDir();
if (process.env.CI && !binDir) throw new Error('CI must have the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup)');

describe.runIf(binDir !== undefined)('reads from a streaming replica (READ_DATABASE_URL)', () => {
  let cluster: Cluster;
  let relay: TestRelay;
  let client: RawClient;
  const author = newKey();
  let sub = 0;

  beforeAll(async () => {
    cluster = await startCluster(binDir as string);
    relay = await startTestRelay(
      'postgres',
      {
        READ_DATABASE_URL: cluster.replicaUrl,
        DATABASE_CONNECT_TIMEOUT_MS: '2000',
        DATABASE_QUERY_TIMEOUT_MS: '3000',
        // Which database answered is what this file checks: the recent-events cache (loaded on
        // the primary) would answer these author reads itself.
        RECENT_CACHE_MB: '0',
      },
      { databaseUrl: cluster.primaryUrl },
    );
    client = await RawClient.open(relay.url);
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await relay?.stop();
    await cluster?.stop();
  });

  const publish = async (content: string) => {
    const ev = sign(author.sk, { content });
    client.send(['EVENT', ev]);
    expect((await client.ok(ev.id))[2]).toBe(true);
    return ev.id;
  };
  const stored = async () => (await client.req(`s${++sub}`, { authors: [author.pubkey], limit: 10 })).events.map((e) => e.id as string);
  const counted = async () => {
    const id = `c${++sub}`;
    client.send(['COUNT', id, { authors: [author.pubkey] }]);
    return ((await client.next((m) => m[0] === 'COUNT' && m[1] === id))[2] as { count: number }).count;
  };
  /** Waits until the replica has replayed `id` (asked directly, not through the relay). */
  const replicated = async (id: string) => {
    const c = new pg.Client({ connectionString: cluster.replicaUrl });
    await c.connect();
    try {
      await until(async () => (await c.query('SELECT 1 FROM events WHERE id = $1', [Buffer.from(id, 'hex')])).rowCount === 1, 15_000);
    } finally {
      await c.end();
    }
  };

  it('answers REQ and COUNT from the replica while the primary takes writes', async () => {
    const first = await publish('first');
    await replicated(first);
    await cluster.pauseReplay();
    const second = await publish('second, committed on the primary while the replica does not replay');
    expect(await stored()).toEqual([first]);
    expect(await counted()).toBe(1);
    await cluster.resumeReplay();
    await until(async () => (await stored()).includes(second));
  });

  it('a replica that dies sends reads back to the primary, and they return once it is up', async () => {
    await cluster.pauseReplay();
    const third = await publish('third');
    expect(await stored()).not.toContain(third);
    await cluster.killReplica();
    // Served by the primary: nothing lost, no error to the client.
    expect(await stored()).toContain(third);
    expect(await counted()).toBe(3);

    await cluster.startReplica();
    await replicated(third);
    await cluster.pauseReplay();
    const fourth = await publish('fourth');
    // Once the relay's probe finds the replica healthy, reads are the replica's again.
    await until(async () => !(await stored()).includes(fourth), 15_000);
    await cluster.resumeReplay();
  }, 60_000);
});
