import type { Bus } from '@paidrelay/bus';
import type { Config, RelayKey } from '@paidrelay/config';
import type { Database } from '@paidrelay/db';
import type { Logger } from 'pino';
import type { PaymentGate } from './gate.ts';
import type { ManagementMethod } from './management.ts';
import type { Metrics } from './metrics.ts';
import type { WritePolicy } from './policy.ts';
import type { Membership, ReadPolicy } from './read-policy.ts';

/**
 * A change to the NIP-11 document (khatru's OverwriteRelayInformation). The document is
 * rendered again when moderation changes, or when a hook's `version` (if it has one) does.
 */
export type Nip11Hook = ((doc: Record<string, unknown>) => Record<string, unknown>) & { version?: () => number };

/**
 * What an entry point adds to the relay core, as plain functions and lists of them (khatru's
 * `RejectEvent`, `RejectFilter`, `OverwriteRelayInformation`...). The core knows nothing of
 * what they do: with none, it is an open relay. Lists from several sources are joined in order.
 */
export type RelayHooks = {
  /** Run for every write after the core's own (moderation, then the config's policies), in order. */
  writePolicies?: WritePolicy[];
  /** Run for every REQ and COUNT filter after the core's own, in order. */
  readPolicies?: ReadPolicy[];
  /** The write gate, asked after every write policy has passed (at most one). */
  gate?: PaymentGate;
  /** "Is this pubkey a member now?", which READ_ACCESS=members needs (at most one). */
  membership?: Membership;
  /** Changes to the NIP-11 document, in order. */
  nip11?: Nip11Hook[];
  /** Run on the relay's purge timer (PURGE_INTERVAL_SECONDS) with the time; each resolves to the rows it dropped. */
  purge?: ((now: number) => Promise<number>)[];
  /** Run on close, after the sockets and the writer are done, before the bus and the database close. */
  onClose?: (() => void | Promise<void>)[];
  /** More NIP-86 methods by name (the payment side's prices and grants); a name given twice is an error. */
  management?: Record<string, ManagementMethod>;
};

/** The core's services that hooks may need, built before them (the payment gate reads accounts, follows the allow-list...). */
export type RelayCore = {
  config: Config;
  log: Logger;
  db: Database;
  bus: Bus;
  key: RelayKey;
  metrics: Metrics;
  instanceId: string;
  /** ALLOWED_PUBKEYS joined to the admins' NIP-86 allow-list, as of now. */
  allowedPubkeys(): ReadonlySet<string>;
  /**
   * Resolves at once when the writer has no group commit in flight, else when it next has none:
   * background writes (held events) wait for it so as not to slow a paying write's OK.
   */
  writerIdle(): Promise<void>;
};

/** Hooks as given, or built from the core's services once they exist. */
export type HookSource = RelayHooks | ((core: RelayCore) => RelayHooks | Promise<RelayHooks>);

/** The hooks of every source, joined: lists concatenated in order; a gate or a membership from two sources is an error. */
export async function resolveHooks(
  sources: readonly HookSource[],
  core: RelayCore,
): Promise<Required<Omit<RelayHooks, 'gate' | 'membership'>> & Pick<RelayHooks, 'gate' | 'membership'>> {
  const out = {
    writePolicies: [] as WritePolicy[],
    readPolicies: [] as ReadPolicy[],
    nip11: [] as Nip11Hook[],
    purge: [] as ((now: number) => Promise<number>)[],
    onClose: [] as (() => void | Promise<void>)[],
    management: {} as Record<string, ManagementMethod>,
    gate: undefined as PaymentGate | undefined,
    membership: undefined as Membership | undefined,
  };
  for (const source of sources) {
    const h = typeof source === 'function' ? await source(core) : source;
    out.writePolicies.push(...(h.writePolicies ?? []));
    out.readPolicies.push(...(h.readPolicies ?? []));
    out.nip11.push(...(h.nip11 ?? []));
    out.purge.push(...(h.purge ?? []));
    out.onClose.push(...(h.onClose ?? []));
    for (const [name, method] of Object.entries(h.management ?? {})) {
      if (Object.hasOwn(out.management, name)) throw new Error(`two management methods named ${name} given to the relay`);
      out.management[name] = method;
    }
    if (h.gate) {
      if (out.gate) throw new Error('two payment gates given to the relay');
      out.gate = h.gate;
    }
    if (h.membership) {
      if (out.membership) throw new Error('two membership checks given to the relay');
      out.membership = h.membership;
    }
  }
  return out;
}
