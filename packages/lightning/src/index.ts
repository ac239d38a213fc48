import './websocket.ts';

export {
  LightningError,
  NIP47_EVENT_KINDS,
  type Invoice,
  type Payment,
  type InvoiceState,
  type InvoiceLookup,
  type MakeInvoiceParams,
  type LightningBackend,
  type Log,
} from './types.ts';
export { connectNwc, parseNwcConnectionString, redactNwc, type ConnectNwcOptions } from './nwc.ts';
export { decodeBolt11, createBolt11, DEV_NETWORK, type DecodedInvoice, type BitcoinNetwork } from './bolt11.ts';
export { ensureGlobalWebSocket } from './websocket.ts';
/** The SDK's NIP-47 client (e.g. for a payer wallet in tests and dev tools) and its errors. */
export { NWCClient, Nip47Error, Nip47WalletError } from '@getalby/sdk/nwc';
