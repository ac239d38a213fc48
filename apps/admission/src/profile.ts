import { encodeEventMessage, EVENTS_CHANNEL } from '@paidrelay/bus';
import { queryEvents, storeEvents } from '@paidrelay/db';
import { eventToJson, type NostrEvent } from '@paidrelay/nostr';
import { bech32 } from '@scure/base';
import { finalizeEvent } from 'nostr-tools/pure';
import { now, type AdmissionContext } from './context.ts';
import { ADMISSION_SENDER } from './settle.ts';

/** LUD-01: the LNURL-pay URL as bech32 `lnurl1...`, which clients resolve as given (http in development). */
export function encodeLnurl(url: string): string {
  return bech32.encode('lnurl', bech32.toWords(new TextEncoder().encode(url)), 2000).toUpperCase();
}

/**
 * The relay's own kind 0 profile, so any client's zap button reaches our LNURL endpoint:
 * lud06 with the exact URL, and lud16 `<name>@<payments host>` when the payments URL is https
 * (clients resolve a lud16 over https only, and prefer it to lud06, so an http deployment —
 * a laptop — must not advertise one). Published at start when it is missing or different.
 */
export async function publishRelayProfile(ctx: AdmissionContext): Promise<void> {
  const host = new URL(ctx.config.PAYMENTS_URL).host;
  const https = new URL(ctx.config.PAYMENTS_URL).protocol === 'https:';
  const content = JSON.stringify({
    name: ctx.config.RELAY_NAME,
    about: ctx.config.RELAY_DESCRIPTION,
    ...(https ? { lud16: `${ctx.config.LNURL_NAME}@${host}` } : {}),
    lud06: encodeLnurl(`${ctx.origin}/.well-known/lnurlp/${ctx.config.LNURL_NAME}`),
    website: ctx.config.PAYMENTS_URL,
  });
  const [current] = await queryEvents(ctx.db.kysely, [{ kinds: [0], authors: [ctx.relayKey.pubkey], limit: 1 }], now());
  if (current && (JSON.parse(current) as NostrEvent).content === content) return;
  const ev = finalizeEvent({ kind: 0, created_at: now(), tags: [], content }, ctx.relayKey.secretKey) as NostrEvent;
  const raw = eventToJson(ev);
  await storeEvents(ctx.db.kysely, [{ event: ev, raw }], now());
  ctx.bus.publish(EVENTS_CHANNEL, encodeEventMessage(ADMISSION_SENDER, raw));
}
