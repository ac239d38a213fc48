import type { Config } from '@paidrelay/config';

/**
 * Whether the config may sell anything (a price set, or members-only reads), read from the
 * config alone, so that main.ts decides without loading any payment code. When it says yes,
 * paid.ts still decides from the parsed prices (a `PRICE_PUBLICATION_KINDS` of zeros sells
 * nothing and gets no gate).
 */
export function sellsAnything(config: Config): boolean {
  return (
    config.PRICE_ADMISSION_MSAT > 0 ||
    config.PRICE_SUBSCRIPTION_MSAT > 0 ||
    config.PRICE_PUBLICATION_MSAT > 0 ||
    config.PRICE_PUBLICATION_PER_KB_MSAT > 0 ||
    config.PRICE_EVENT_MSAT > 0 ||
    config.PRICE_PUBLICATION_KINDS.trim() !== '' ||
    config.READ_ACCESS === 'members'
  );
}
