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

export function encodeEventMessage(sender: string, eventJson: string): string {
  return sender + '\n' + eventJson;
}

export function decodeEventMessage(msg: string): { sender: string; eventJson: string } | undefined {
  const nl = msg.indexOf('\n');
  if (nl < 0) return undefined;
  return { sender: msg.slice(0, nl), eventJson: msg.slice(nl + 1) };
}
