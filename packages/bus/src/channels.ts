/**
 * The channels that cross processes, and their message formats. One place, so the relay,
 * the admission service and the dashboard agree.
 */

/** Events to fan out: `<sender id>\n<event JSON>`. Stored or ephemeral, already accepted. */
export const EVENTS_CHANNEL = 'events';
/** Account changes (grants, credits, debits): JSON of `{ pubkey, admitted, admittedUntil, balanceMsat }`. */
export const ACCOUNTS_CHANNEL = 'accounts';
/** Invoice status changes: JSON of the invoice as the API shows it. */
export const INVOICES_CHANNEL = 'invoices';
/**
 * NIP-86 moderation changes (bans, allow-lists, kinds, addresses, relay texts): the sender's
 * instance id. Each relay replica reloads its moderation state from Postgres on a message.
 */
export const MODERATION_CHANNEL = 'moderation';
/**
 * Price changes (NIP-86 `setprices`): any text. Each relay replica and admission service
 * reloads the prices from Postgres on a message.
 */
export const PRICES_CHANNEL = 'prices';

export function encodeEventMessage(sender: string, eventJson: string): string {
  return sender + '\n' + eventJson;
}

export function decodeEventMessage(msg: string): { sender: string; eventJson: string } | undefined {
  const nl = msg.indexOf('\n');
  if (nl < 0) return undefined;
  return { sender: msg.slice(0, nl), eventJson: msg.slice(nl + 1) };
}
