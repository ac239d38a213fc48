import { randomBytes } from 'node:crypto';
import { ACCOUNTS_CHANNEL, encodeEventMessage, EVENTS_CHANNEL } from '@paidrelay/bus';
import { adminGrant, getPriceSettings, listPriceChanges, updatePriceSettings, type AdminGrant, type GrantAccount } from '@paidrelay/db';
import {
  parsePriceChange,
  releaseHeldEvents,
  settingsJson,
  spamPolicyProblem,
  type LivePrices,
  type PaymentGate,
} from '@paidrelay/payment-gate';
import { badRequest, int, options, pubkeyParam, text, type ManagementMethod } from './management.ts';

/**
 * The payment side's NIP-86 methods (our extension; names not in the NIP), handed to the core
 * as hooks by paid.ts: the prices (`getprices`, `setprices`, `listpricechanges`) and the
 * grants (`grantadmission`, `extendadmission`, `grantcredit`). Each takes one params object.
 */

/** Sender id on the events channel of held events a grant published (every replica delivers them, this one too). */
export const GRANT_SENDER = 'admin-grant';

type GrantArgs = { pubkey: string; reason: string } & AdminGrant;
type GrantResult = { account: GrantAccount; ledger: { txid: string; rows: number }; released: string[] };

/**
 * A grant: the account changed and booked (db adminGrant), valued at the prices of now, and
 * the key's held events that are now free to publish stored, as a paid settlement does. After
 * the commit every replica's account cache learns the account and every replica's subscribers
 * get the released events over the bus, within a second.
 */
function grant(prices: LivePrices, parse: (o: Record<string, unknown>) => AdminGrant): ManagementMethod {
  return {
    parse: (p) => {
      const o = options(p);
      return [{ pubkey: pubkeyParam(o.pubkey), reason: text(o.reason, 'reason'), ...parse(o) } satisfies GrantArgs];
    },
    run: async ({ trx, actor, at }, [args]): Promise<GrantResult> => {
      const g = args as GrantArgs;
      const p = prices.pricing;
      // What the grant is worth: admission's price, or the subscription price per period pro rata; a credit is its amount.
      const valueMsat =
        g.kind === 'admission'
          ? p.admissionMsat
          : g.kind === 'extend'
            ? Math.round((p.subscriptionMsat * g.seconds) / Math.max(1, p.subscriptionPeriodSeconds))
            : 0;
      const r = await adminGrant(trx, { ...g, admin: actor, valueMsat, now: at, txid: `grant:${randomBytes(12).toString('base64url')}` });
      return { ...r, released: await releaseHeldEvents(trx, p, r.account, at) };
    },
    change: true,
    reload: false,
    after: (ctx, result) => {
      const { released, ...r } = result as GrantResult;
      ctx.bus.publish(ACCOUNTS_CHANNEL, JSON.stringify(r.account));
      for (const raw of released) ctx.bus.publish(EVENTS_CHANNEL, encodeEventMessage(GRANT_SENDER, raw));
      return { ...r, released: released.map((raw) => (JSON.parse(raw) as { id: string }).id) };
    },
  };
}

/** `senders`: the gate's top senders (`listtopsenders`). */
export function paidManagementMethods(prices: LivePrices, senders?: Pick<PaymentGate, 'topSenders'>): Record<string, ManagementMethod> {
  return {
    /**
     * getprices []: the prices every replica enforces now, the spam policy (`spam`, snake_case;
     * `enabled` false: spam pricing off), and who changed them last (null: the environment's seed).
     */
    getprices: {
      parse: () => [],
      run: async ({ trx }) => {
        const s = await getPriceSettings(trx);
        if (!s) throw new Error('price_settings: not seeded');
        return { ...settingsJson(s), updated_at: s.updatedAt, updated_by: s.updatedBy };
      },
      change: false,
    },

    /**
     * setprices [{admission_msat?, subscription_msat?, subscription_period_seconds?, publication_msat?,
     * publication_kinds? ({"<kind>": msat}, replaces the map), publication_per_kb_msat?, event_msat?,
     * spam? {...any field of getprices' spam}}]: integer msat, none negative; the spam fields named
     * are merged over the stored policy; all or nothing. Every replica and admission service follows
     * within a second.
     */
    setprices: {
      parse: (p) => {
        if (p.length !== 1) throw badRequest('params must be [{...the prices to change}]');
        const r = parsePriceChange(p[0]);
        if (!r.ok) throw badRequest(r.error);
        return [r.change];
      },
      run: async ({ trx, actor, at }, [change]) => {
        const r = await updatePriceSettings(trx, change as Parameters<typeof updatePriceSettings>[1], actor, at);
        // Checked on the merged policy (a field may clash with a stored one); thrown, nothing is kept.
        const problem = spamPolicyProblem(r.new.spam);
        if (problem) throw badRequest(problem);
        return { old: settingsJson(r.old), new: settingsJson(r.new) };
      },
      change: true,
      reload: false,
      after: async (_ctx, result) => {
        await prices.changed();
        return result;
      },
    },

    /** listpricechanges [{limit? (50, ≤500), before? (an id: older rows)}]: newest first; pubkey null is the environment's seed. */
    listpricechanges: {
      parse: (p) => {
        const o = options(p);
        const before = o.before === undefined || o.before === null ? undefined : int(o.before, 'before', 0, 1, Number.MAX_SAFE_INTEGER);
        return [{ limit: int(o.limit, 'limit', 50, 1, 500), before }];
      },
      run: async ({ trx }, [args]) => {
        const a = args as { limit: number; before?: number };
        const changes = (await listPriceChanges(trx, a)).map((c) => ({
          id: c.id,
          at: c.at,
          pubkey: c.pubkey,
          old: c.old && settingsJson(c.old),
          new: settingsJson(c.new),
        }));
        return { changes, nextBefore: changes.length === a.limit ? changes[changes.length - 1].id : null };
      },
      change: false,
    },

    /** grantadmission [{pubkey, reason?}]: admitted forever. */
    grantadmission: grant(prices, () => ({ kind: 'admission' })),
    /** extendadmission [{pubkey, seconds (or days), reason?}]: admitted until max(now, end) + seconds. */
    extendadmission: grant(prices, (o) => {
      const seconds =
        o.days !== undefined ? int(o.days, 'days', 0, 1, 36_500) * 86_400 : int(o.seconds, 'seconds', 0, 1, 100 * 365 * 86_400);
      if (seconds === 0) throw badRequest('seconds (or days) is required');
      return { kind: 'extend', seconds };
    }),
    /** grantcredit [{pubkey, amount_msat, reason?}]: added to the prepaid balance. */
    grantcredit: grant(prices, (o) => {
      const amountMsat = int(o.amount_msat, 'amount_msat', 0, 1, 21e14);
      if (amountMsat === 0) throw badRequest('amount_msat is required');
      return { kind: 'credit', amountMsat };
    }),
    /**
     * listtopsenders [{limit? (20, at most 100)}]: { window_seconds, senders: [{pubkey, events,
     * bytes, multiplier}] }: the heaviest senders of the spam window over every replica, by
     * events, with the multiplier of their next write beyond the allowance (own volume and the
     * relay's load; a network's surge is not in it). Empty with spam pricing off.
     */
    listtopsenders: {
      parse: (p) => [int(options(p).limit, 'limit', 20, 1, 100)],
      run: async (_call, [limit]) => ({
        window_seconds: prices.pricing.surge?.windowSeconds ?? 0,
        senders: senders ? await senders.topSenders(limit as number) : [],
      }),
      change: false,
    },
  };
}
