import type { Config } from '@paidrelay/config';

/**
 * Whether this relay may sell anything (a price set, members-only reads, or admins, who can
 * set prices at run time through NIP-86), read from the config alone, so that main.ts decides
 * without loading any payment code. With none of these the relay is open and loads no payment
 * code (it does not read the stored prices either).
 */
export function sellsAnything(config: Config): boolean {
  return (
    config.ADMIN_PUBKEYS.trim() !== '' ||
    config.PRICE_ADMISSION_MSAT > 0 ||
    config.PRICE_SUBSCRIPTION_MSAT > 0 ||
    config.PRICE_PUBLICATION_MSAT > 0 ||
    config.PRICE_PUBLICATION_PER_KB_MSAT > 0 ||
    config.PRICE_EVENT_MSAT > 0 ||
    config.PRICE_PUBLICATION_KINDS.size > 0 ||
    config.READ_ACCESS === 'members'
  );
}
