import { deleteHeldEvents, listHeldEvents, storeEvents, type AccountRow, type Schema } from '@paidrelay/db';
import type { NostrEvent } from '@paidrelay/nostr';
import { gate, type Pricing } from '@paidrelay/pricing';
import type { Kysely } from 'kysely';

/**
 * After a grant (a paid settlement, or an admin's), in its transaction: the pubkey's refused
 * writes that the gate now accepts for free are stored (the person paid admission from the pay
 * link of a refused post and expects to see it). Ones that would cost a publication price stay
 * held: the person can pay for them or re-post. Returns the JSON of those stored, for the
 * caller to publish on the bus after the commit.
 */
export async function releaseHeldEvents(
  trx: Kysely<Schema>,
  pricing: Pricing,
  account: Omit<AccountRow, 'createdAt' | 'paidMsat'>,
  at: number,
): Promise<string[]> {
  const acc = { admitted: account.admitted, admittedUntil: account.admittedUntil, balanceMsat: account.balanceMsat };
  const released: { id: string; raw: string }[] = [];
  for (const held of await listHeldEvents(trx, account.pubkey, at)) {
    const ev = JSON.parse(held.raw) as NostrEvent;
    if (gate(pricing, ev, Buffer.byteLength(held.raw), acc, at).action === 'accept') released.push(held);
  }
  if (released.length === 0) return [];
  const outcomes = await storeEvents(
    trx,
    released.map((h) => ({ event: JSON.parse(h.raw) as NostrEvent, raw: h.raw })),
    at,
  );
  await deleteHeldEvents(
    trx,
    released.map((h) => h.id),
  );
  return released.filter((_, i) => outcomes[i].status === 'stored').map((h) => h.raw);
}
