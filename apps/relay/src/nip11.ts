import { readFileSync } from 'node:fs';
import type { Config } from '@paidrelay/config';
import type { ReadPolicy } from './read-policy.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export const SUPPORTED_NIPS = [1, 9, 11, 13, 40, 42, 45, 70];

/**
 * The NIP-11 document of the core: every limit listed here is one the relay enforces. The read
 * policies say what they do themselves (`read_policies`); `auth_required` is true only when every
 * read needs AUTH. Writes cost nothing here: a payment gate's fields (`fees`, `payments_url`,
 * `payment_required`, `restricted_writes`) come through the NIP-11 hooks with the gate.
 */
export function relayInfo(config: Config, selfPubkey: string, readPolicies: readonly ReadPolicy[] = []): Record<string, unknown> {
  const reads: Record<string, unknown> = {};
  for (const p of readPolicies) if (p.nip11) reads[p.nip11.name] = p.nip11.info;
  const everyReadNeedsAuth = config.AUTH_REQUIRED || readPolicies.some((p) => p.nip11?.everyReadNeedsAuth === true);
  const doc: Record<string, unknown> = {
    name: config.RELAY_NAME,
    description: config.RELAY_DESCRIPTION,
    self: selfPubkey,
    pubkey: config.RELAY_ADMIN_PUBKEY ?? selfPubkey,
    // NIP-86 management is served when someone may use it.
    supported_nips: config.ADMIN_PUBKEYS.trim() ? [...SUPPORTED_NIPS, 86] : SUPPORTED_NIPS,
    ...(config.RELAY_SOFTWARE_URL ? { software: config.RELAY_SOFTWARE_URL } : {}),
    version: pkg.version,
    limitation: {
      max_message_length: config.MAX_MESSAGE_LENGTH,
      max_subscriptions: config.MAX_SUBSCRIPTIONS,
      max_filters: config.MAX_FILTERS,
      max_limit: config.MAX_LIMIT,
      default_limit: config.DEFAULT_LIMIT,
      max_subid_length: config.MAX_SUBID_LENGTH,
      max_event_tags: config.MAX_EVENT_TAGS,
      max_content_length: config.MAX_CONTENT_LENGTH,
      min_pow_difficulty: config.MIN_POW_DIFFICULTY,
      auth_required: everyReadNeedsAuth,
      payment_required: false,
      restricted_writes: config.MIN_POW_DIFFICULTY > 0 || config.AUTH_REQUIRED,
      created_at_lower_limit: config.CREATED_AT_LOWER_LIMIT,
      created_at_upper_limit: config.CREATED_AT_UPPER_LIMIT,
      max_connections_per_ip: config.MAX_CONNECTIONS_PER_IP,
      max_messages_per_second: config.MAX_MESSAGES_PER_SECOND,
      // Token buckets across all of a client's connections and every replica (0: off): per second, and burst.
      events_per_second_per_pubkey: config.RATE_EVENTS_PER_PUBKEY,
      events_burst_per_pubkey: config.RATE_EVENTS_BURST_PER_PUBKEY,
      events_per_second_per_ip: config.RATE_EVENTS_PER_IP,
      events_burst_per_ip: config.RATE_EVENTS_BURST_PER_IP,
      reqs_per_second_per_ip: config.RATE_REQS_PER_IP,
      reqs_burst_per_ip: config.RATE_REQS_BURST_PER_IP,
    },
  };
  if (Object.keys(reads).length > 0) doc.read_policies = reads;
  if (config.RELAY_CONTACT) doc.contact = config.RELAY_CONTACT;
  if (config.RELAY_ICON) doc.icon = config.RELAY_ICON;
  if (config.RELAY_TERMS_URL) doc.terms_of_service = config.RELAY_TERMS_URL;
  return doc;
}
