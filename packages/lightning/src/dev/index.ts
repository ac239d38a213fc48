/**
 * `@paidrelay/lightning/dev`: the dev Lightning network, for development and tests only. No
 * production code imports it: the all-in-one and the admission service (without NWC_URL,
 * outside production) load it with a dynamic import.
 */
export {
  DevLightningNetwork,
  DEFAULT_PAYER_BALANCE_MSAT,
  DEV_WALLET_FILES,
  type DevLightningNetworkOptions,
  type DevWalletName,
} from './network.ts';
