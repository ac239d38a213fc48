/**
 * A Postgres primary and a streaming replica of it, started for a test in a temporary folder
 * (initdb, pg_basebackup -R, pg_ctl), on free ports of 127.0.0.1, trust authentication. Its own
 * primary rather than the test server: streaming needs replication entries in pg_hba.conf, and
 * a base backup copies a whole cluster.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../../../test/bench/relay.ts';

const run = promisify(execFile);

/** The folder with initdb, pg_ctl and pg_basebackup: PG_BINDIR, else the newest /usr/lib/postgresql/<n>/bin. */
export function postgresBinDir(): string | undefined {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(root, versions[0], 'bin') : undefined;
}

export type Cluster = {
  primaryUrl: string;
  replicaUrl: string;
  /** Stops the replica at once (as a crash would). */
  killReplica(): Promise<void>;
  startReplica(): Promise<void>;
  /** Replay on the replica stops (it keeps receiving WAL): what the primary writes meanwhile is not readable there. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  stop(): Promise<void>;
};

export async function startCluster(binDir: string): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'paidrelay-cluster-'));
  // initdb refuses to run as root: run the server tools as the postgres user then.
  const asRoot = userInfo().uid === 0;
  if (asRoot) chownSync(dir, Number((await run('id', ['-u', 'postgres'])).stdout), Number((await run('id', ['-g', 'postgres'])).stdout));
  const tool = (name: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(binDir, name), ...args]) : run(join(binDir, name), args);
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const primary = join(dir, 'primary');
  const replica = join(dir, 'replica');
  const timeout = ['-t', '30'];

  await tool('initdb', ['-D', primary, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  await appendFile(
    join(primary, 'postgresql.conf'),
    `\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${dir}'\nwal_level = replica\nmax_wal_senders = 4\nfsync = off\nshared_buffers = 16MB\n`,
  );
  const start = (data: string, port: number) =>
    tool('pg_ctl', ['-D', data, '-l', join(dir, `${port}.log`), '-o', `-p ${port}`, '-w', ...timeout, 'start']);
  await start(primary, primaryPort);
  const primaryUrl = `postgres://postgres@127.0.0.1:${primaryPort}/postgres`;
  const replicaUrl = `postgres://postgres@127.0.0.1:${replicaPort}/postgres`;
  let replicaUp = false;
  try {
    await tool('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(primaryPort),
      '-U',
      'postgres',
      '-D',
      replica,
      '-R',
      '-X',
      'stream',
      '-c',
      'fast',
    ]);
    await start(replica, replicaPort);
    replicaUp = true;
  } catch (err) {
    await tool('pg_ctl', ['-D', primary, '-m', 'immediate', '-w', 'stop']).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const onReplica = async (query: string) => {
    const c = new pg.Client({ connectionString: replicaUrl, connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      await c.query(query);
    } finally {
      await c.end();
    }
  };

  return {
    primaryUrl,
    replicaUrl,
    async killReplica() {
      await tool('pg_ctl', ['-D', replica, '-m', 'immediate', '-w', ...timeout, 'stop']);
      replicaUp = false;
    },
    async startReplica() {
      await start(replica, replicaPort);
      replicaUp = true;
    },
    pauseReplay: () => onReplica('SELECT pg_wal_replay_pause()'),
    resumeReplay: () => onReplica('SELECT pg_wal_replay_resume()'),
    async stop() {
      if (replicaUp) await tool('pg_ctl', ['-D', replica, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      await tool('pg_ctl', ['-D', primary, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
