import { BlockList, isIP } from 'node:net';
import { MODERATION_CHANNEL, type Bus } from '@paidrelay/bus';
import type { Config } from '@paidrelay/config';
import { deleteEventsById, listModeration, relaySettings, type Database, type ModerationEntry } from '@paidrelay/db';
import { reason, type NostrEvent } from '@paidrelay/nostr';
import type { Logger } from 'pino';
import type { WritePolicy } from './policy.ts';
import type { ReadPolicy } from './read-policy.ts';

/** How often each replica re-reads the moderation state, whatever the bus says (a backstop). */
const RELOAD_MS = 15_000;

/** The NIP-11 texts an admin can change (relay_settings keys). */
export const SETTING_NAME = 'relay_name';
export const SETTING_DESCRIPTION = 'relay_description';
export const SETTING_ICON = 'relay_icon';

/**
 * An address or a network as the management API takes it (`1.2.3.4`, `2001:db8::1`,
 * `10.0.0.0/8`), in one spelling (IPv6 compressed, lowercase), or undefined when it is neither.
 */
export function canonicalAddress(input: string): string | undefined {
  const [addr, prefix, ...rest] = input.trim().toLowerCase().split('/');
  if (rest.length > 0) return undefined;
  const v = isIP(addr);
  if (v === 0) return undefined;
  const a = v === 6 ? new URL(`http://[${addr}]`).hostname.slice(1, -1) : addr;
  if (prefix === undefined) return a;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (v === 4 ? 32 : 128)) return undefined;
  return `${a}/${Number(prefix)}`;
}

function blockListOf(values: readonly string[], log: Logger): BlockList {
  const list = new BlockList();
  for (const v of values) {
    const [addr, prefix] = v.split('/');
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    try {
      if (prefix === undefined) list.addAddress(addr, type);
      else list.addSubnet(addr, Number(prefix), type);
    } catch {
      log.warn({ value: v }, 'moderation: ignoring a blocked address that is not one');
    }
  }
  return list;
}

type State = {
  entries: ModerationEntry[];
  bannedPubkeys: ReadonlySet<string>;
  bannedPubkeyList: string[];
  /** ALLOWED_PUBKEYS and the admins' allow-list together: what the payment gate sees. */
  allowedPubkeys: ReadonlySet<string>;
  bannedEvents: ReadonlySet<string>;
  allowedKinds: ReadonlySet<number>;
  blocked: BlockList;
  blockedCount: number;
  settings: Record<string, string>;
};

/**
 * The moderation state of this replica: what admins set through NIP-86, read from Postgres at
 * start, again whenever any replica announces a change on the bus (within a second), and every
 * RELOAD_MS as a backstop. Lookups are Set reads on the hot path; a reload swaps the whole
 * state at once. The write and read policies below consult it as it is at each call.
 */
export class Moderation {
  private state: State;
  /** Bumped on every reload that changed something (NIP-11 re-renders on a new version). */
  version = 0;
  private timer?: NodeJS.Timeout;
  private loaded = false;
  private reloading?: Promise<void>;
  private again = false;
  /**
   * Called when stored events may have been removed or become visible again (a ban, an unban, a
   * banned event deleted), here or on another replica: before the reload for a change announced
   * on the bus, and after a reload that found one. The recent-events cache drops what it holds.
   */
  onChange?: () => void;

  constructor(
    private readonly db: Database,
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly instanceId: string,
    /** ALLOWED_PUBKEYS from the config: always allowed, whatever the database says. */
    private readonly configAllowed: ReadonlySet<string>,
  ) {
    this.state = this.build([], {});
  }

  async start(): Promise<void> {
    await this.bus.subscribe(MODERATION_CHANNEL, (msg) => {
      if (msg === this.instanceId) return;
      this.onChange?.();
      void this.reload();
    });
    // A change the bus may have missed is read now, not at the next periodic reload.
    this.bus.onLoss(() => void this.reload());
    await this.reload();
    this.timer = setInterval(() => void this.reload(), RELOAD_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** After a change committed on this replica: every replica (this one first) reloads. */
  async changed(): Promise<void> {
    this.onChange?.();
    this.bus.publish(MODERATION_CHANNEL, this.instanceId);
    await this.reload();
  }

  /** Re-reads the state; concurrent calls share one read, and a call during a read gets a fresh one after it. */
  reload(): Promise<void> {
    if (this.reloading) {
      this.again = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.again = false;
        await this.load();
      } while (this.again);
    })().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async load(): Promise<void> {
    let entries: ModerationEntry[];
    let settings: Record<string, string>;
    try {
      [entries, settings] = await Promise.all([listModeration(this.db.kysely), relaySettings(this.db.kysely)]);
    } catch (err) {
      this.log.warn({ err }, 'moderation: reload failed, keeping the current state');
      return;
    }
    const before = this.state;
    const next = this.build(entries, settings);
    if (this.loaded && sameState(before, next)) return;
    this.state = next;
    this.version++;
    // An event banned on another replica may have been stored here just before this replica
    // knew of the ban: it goes too (by primary key, a no-op when it is not stored).
    const newlyBanned = this.loaded ? [...next.bannedEvents].filter((id) => !before.bannedEvents.has(id)) : [];
    this.loaded = true;
    if (newlyBanned.length > 0) {
      await deleteEventsById(this.db.kysely, newlyBanned).catch((err) =>
        this.log.warn({ err }, 'moderation: could not delete banned events'),
      );
    }
    this.onChange?.();
  }

  private build(entries: ModerationEntry[], settings: Record<string, string>): State {
    const of = (list: ModerationEntry['list']) => entries.filter((e) => e.list === list).map((e) => e.value);
    const bannedPubkeyList = of('banned_pubkey');
    const blockedValues = of('blocked_ip');
    return {
      entries,
      bannedPubkeys: new Set(bannedPubkeyList),
      bannedPubkeyList,
      allowedPubkeys: new Set([...this.configAllowed, ...of('allowed_pubkey')]),
      bannedEvents: new Set(of('banned_event')),
      allowedKinds: new Set(of('allowed_kind').map(Number)),
      blocked: blockListOf(blockedValues, this.log),
      blockedCount: blockedValues.length,
      settings,
    };
  }

  /** ALLOWED_PUBKEYS and the admins' allow-list together, as of now (a new Set after each change): what a payment gate takes as free. */
  get allowedPubkeys(): ReadonlySet<string> {
    return this.state.allowedPubkeys;
  }

  get configAllowedPubkeys(): ReadonlySet<string> {
    return this.configAllowed;
  }

  get allowedKinds(): ReadonlySet<number> {
    return this.state.allowedKinds;
  }

  isBannedPubkey(pubkey: string): boolean {
    return this.state.bannedPubkeys.has(pubkey);
  }

  isBlockedAddress(ip: string): boolean {
    if (this.state.blockedCount === 0) return false;
    const v = isIP(ip);
    return v !== 0 && this.state.blocked.check(ip, v === 6 ? 'ipv6' : 'ipv4');
  }

  /** The config as NIP-11 renders it: with the name, description and icon an admin set. */
  infoConfig(config: Config): Config {
    const s = this.state.settings;
    return {
      ...config,
      RELAY_NAME: s[SETTING_NAME] ?? config.RELAY_NAME,
      RELAY_DESCRIPTION: s[SETTING_DESCRIPTION] ?? config.RELAY_DESCRIPTION,
      RELAY_ICON: s[SETTING_ICON] ?? config.RELAY_ICON,
    };
  }

  /** Refuses writes from blocked addresses, banned pubkeys, banned events and kinds not allowed. */
  readonly writePolicy: WritePolicy = (ev, { ip }) => {
    const s = this.state;
    if (s.blockedCount > 0 && this.isBlockedAddress(ip)) return reason('blocked', 'your address is blocked on this relay');
    if (s.bannedPubkeys.has(ev.pubkey)) return reason('blocked', 'this pubkey is banned from this relay');
    if (s.bannedEvents.has(ev.id)) return reason('blocked', 'this event is banned from this relay');
    if (s.allowedKinds.size > 0 && !s.allowedKinds.has(ev.kind)) return reason('blocked', `kind ${ev.kind} is not accepted on this relay`);
    return undefined;
  };

  /** What a live subscription may still receive: never a banned pubkey's or a banned event. */
  private readonly visible = (ev: NostrEvent): boolean => {
    const s = this.state;
    return !s.bannedPubkeys.has(ev.pubkey) && !s.bannedEvents.has(ev.id);
  };

  /**
   * Hides banned pubkeys' events: a filter naming authors loses the banned ones (nothing left:
   * the filter is dropped); any other filter gets an `authors` exclusion for the store. Banned
   * events are deleted from storage when banned, so only live delivery needs checking for them.
   */
  readonly readPolicy: ReadPolicy = (filter) => {
    const s = this.state;
    if (s.bannedPubkeys.size === 0) return { filter, deliver: this.visible };
    if (filter.authors !== undefined) {
      const kept = filter.authors.filter((a) => !s.bannedPubkeys.has(a));
      if (kept.length === 0) return { filter: null };
      return { filter: kept.length === filter.authors.length ? filter : { ...filter, authors: kept }, deliver: this.visible };
    }
    return { filter: { ...filter, notAuthors: s.bannedPubkeyList }, deliver: this.visible };
  };
}

function sameState(a: State, b: State): boolean {
  if (a.entries.length !== b.entries.length) return false;
  for (let i = 0; i < a.entries.length; i++) {
    const x = a.entries[i];
    const y = b.entries[i];
    if (x.list !== y.list || x.value !== y.value || x.reason !== y.reason) return false;
  }
  const ka = Object.keys(a.settings);
  return ka.length === Object.keys(b.settings).length && ka.every((k) => a.settings[k] === b.settings[k]);
}
