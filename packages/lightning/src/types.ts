/** An invoice as the wallet issued it. Amounts are millisatoshis; times are unix seconds. */
export type Invoice = {
  bolt11: string;
  paymentHash: string;
  amountMsat: number;
  createdAt: number;
  expiresAt: number;
  description?: string;
  descriptionHash?: string;
};

/** A payment the wallet reported as received (NIP-47 `payment_received`). */
export type Payment = { paymentHash: string; amountMsat: number; preimage: string; settledAt: number };

export type InvoiceState = 'pending' | 'settled' | 'expired' | 'failed';

export type InvoiceLookup = {
  state: InvoiceState;
  amountMsat: number;
  preimage?: string;
  settledAt?: number;
};

export type MakeInvoiceParams = {
  amountMsat: number;
  description?: string;
  /** hex sha256 of the description (NIP-57: of the zap request). */
  descriptionHash?: string;
  expirySeconds: number;
};

export interface LightningBackend {
  readonly kind: 'nwc' | 'dev';
  makeInvoice(p: MakeInvoiceParams): Promise<Invoice>;
  /** 'settled' only when the wallet says so. */
  lookupInvoice(paymentHash: string): Promise<InvoiceLookup>;
  /** NIP-47 payment_received notifications; resolves once subscribed; returns an unsubscribe function. */
  onPaymentReceived(handler: (p: Payment) => void): Promise<() => void>;
  close(): Promise<void>;
}

/**
 * Every error this package throws on purpose. `code` is a NIP-47 error code when the wallet
 * answered with one (NOT_FOUND, PAYMENT_FAILED, INSUFFICIENT_BALANCE, ...), or one of
 * BAD_CONNECTION_STRING, UNSUPPORTED_WALLET, BAD_REQUEST, BAD_WALLET_RESPONSE, NETWORK.
 */
export class LightningError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LightningError';
  }
}

/** The structural subset of a pino logger this package uses. */
export type Log = {
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
};

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Every event kind NIP-47 uses: the info event (13194, replaceable), requests (23194),
 * responses (23195) and notifications (23196 NIP-04, 23197 NIP-44), all but the info event
 * ephemeral. A paid relay lets them through its payment gate only from the wallets it uses
 * itself (WALLET_PUBKEYS, the keys of NWC_URL, the dev network's), or no one could pay.
 */
export { NIP47_KINDS as NIP47_EVENT_KINDS } from '@paidrelay/nostr';
