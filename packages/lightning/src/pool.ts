import type { NWCClient } from '@getalby/sdk/nwc';
import type { Event, Filter } from 'nostr-tools';
import type { Log } from './types.ts';
import { errorMessage } from './util.ts';

/** The SDK's ReconnectingPool (not exported by name; NWCClient and NWCWalletService each own one). */
export type SdkPool = NWCClient['pool'];
type SubscribeParams = Parameters<SdkPool['subscribe']>[2];

export type InstrumentedPool = {
  /**
   * Resolves once the newest subscription whose filter matches `pred` is live on a relay:
   * its REQ was sent, and a later REQ on the same connection got its EOSE back, so the
   * relay has registered it. Undefined if no such subscription was made.
   */
  ready(pred: (f: Filter) => boolean): Promise<void> | undefined;
  /** The pool's own publish, results unchanged. */
  rawPublish(relays: string[], event: Event): Promise<string>[];
};

const NO_SUCH_ID = '0'.repeat(64);

/**
 * Wraps an SDK pool (instance methods only, the SDK itself is untouched):
 * - tracks when each subscription is really live (`ready`), which the SDK does not expose;
 * - `since` (optional) adds a lower bound on created_at to every subscription, so a relay
 *   that (wrongly) stores ephemeral NIP-47 requests cannot make a restarted wallet service
 *   execute old requests again;
 * - `swallowPublishErrors`: the SDK's wallet service publishes responses with an unawaited
 *   `Promise.any(...)`, so a relay that refuses a response would be an unhandled rejection
 *   (a crash on Node). The wrapper logs the refusal instead.
 */
export function instrumentPool(
  pool: SdkPool,
  opts: {
    log: Log;
    since?: () => number;
    swallowPublishErrors?: boolean;
    /** Called on every (re)connection of every subscription, with the relay URL. */
    onconnect?: (url: string) => void;
  },
): InstrumentedPool {
  const subscribe = pool.subscribe.bind(pool);
  const publish = pool.publish.bind(pool);
  const readiness: { filter: Filter; ready: Promise<void> }[] = [];

  pool.subscribe = (relays: string[], filter: Filter, params: SubscribeParams) => {
    const f: Filter = opts.since ? { ...filter, since: opts.since() } : filter;
    let firstConnect: ((url: string) => void) | undefined;
    const connected = new Promise<string>((resolve) => (firstConnect = resolve));
    const ready = connected.then((url) => roundTrip(pool, url, opts.log));
    ready.catch(() => {});
    const entry = { filter: f, ready };
    readiness.push(entry);
    if (readiness.length > 16) readiness.shift();
    const closer = subscribe(relays, f, {
      ...params,
      onconnect: (url: string) => {
        params.onconnect?.(url);
        opts.onconnect?.(url);
        firstConnect?.(url);
        firstConnect = undefined;
      },
    });
    return {
      close: (reason?: string) => {
        const i = readiness.indexOf(entry);
        if (i >= 0) readiness.splice(i, 1);
        closer.close(reason);
      },
    };
  };

  if (opts.swallowPublishErrors) {
    pool.publish = (relays: string[], event: Event, params?: { abort?: AbortSignal }) =>
      publish(relays, event, params).map((p) =>
        p.catch((err: unknown) => {
          opts.log.warn({ kind: event.kind, id: event.id, err }, 'the relay refused a NIP-47 event');
          return `error: ${errorMessage(err)}`;
        }),
      );
  }

  return {
    ready(pred) {
      for (let i = readiness.length - 1; i >= 0; i--) if (pred(readiness[i]!.filter)) return readiness[i]!.ready;
      return undefined;
    },
    rawPublish: (relays, event) => publish(relays, event),
  };
}

/** A REQ that can match nothing, sent after the one we wait for; its EOSE means the relay has seen both. */
async function roundTrip(pool: SdkPool, url: string, log: Log): Promise<void> {
  const relay = await pool.ensureRelay(url);
  await new Promise<void>((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      sub.close();
      resolve();
    };
    const sub = relay.subscribe([{ ids: [NO_SUCH_ID] }], {
      oneose: finish,
      onclose: (reason: string) => {
        if (!done) log.debug({ url, reason }, 'readiness probe closed');
        done = true;
        resolve();
      },
      eoseTimeout: 10_000,
    });
  });
}

/** Publishes to every relay; resolves when at least one accepted, else throws with the relays' reasons. */
export async function publishStrict(ip: InstrumentedPool, relays: string[], event: Event): Promise<void> {
  const results = await Promise.allSettled(ip.rawPublish(relays, event));
  const reasons: string[] = [];
  for (const r of results) {
    if (r.status === 'fulfilled') {
      if (!String(r.value).startsWith('connection failure')) return;
      reasons.push(String(r.value));
    } else {
      reasons.push(errorMessage(r.reason));
    }
  }
  throw new Error(`relay refused kind ${event.kind}: ${reasons.join('; ') || 'no relay'}`);
}
