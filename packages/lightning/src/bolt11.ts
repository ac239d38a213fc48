import bolt11 from 'bolt11';
import { LightningError } from './types.ts';
import { isPositiveMsat } from './util.ts';
import { isHex64 } from '@paidrelay/nostr';

export type BitcoinNetwork = 'mainnet' | 'testnet' | 'signet' | 'regtest' | 'simnet';

const NETWORKS: Record<BitcoinNetwork, { bech32: string; pubKeyHash: number; scriptHash: number; validWitnessVersions: number[] }> = {
  mainnet: { bech32: 'bc', pubKeyHash: 0x00, scriptHash: 0x05, validWitnessVersions: [0, 1] },
  testnet: { bech32: 'tb', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] },
  signet: { bech32: 'tbs', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] },
  regtest: { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] },
  simnet: { bech32: 'sb', pubKeyHash: 0x3f, scriptHash: 0x7b, validWitnessVersions: [0, 1] },
};

/** The dev Lightning network issues regtest invoices (`lnbcrt...`): obviously not real money. */
export const DEV_NETWORK: BitcoinNetwork = 'regtest';

/** BOLT11: without an `x` (expiry) field an invoice expires after one hour. */
const DEFAULT_EXPIRY_SECONDS = 3600;

/** BOLT11 `d` field limit in bytes (639 * 8 / 5 = 1023 words); longer texts go by hash. */
export const MAX_DESCRIPTION_BYTES = 639;

export type DecodedInvoice = {
  bolt11: string;
  network: BitcoinNetwork;
  paymentHash: string;
  /** undefined for an invoice without an amount. */
  amountMsat: number | undefined;
  createdAt: number;
  expiresAt: number;
  description?: string;
  descriptionHash?: string;
  /** The node key recovered from the signature (checked against the `n` field when present). */
  payeeNodeKey: string;
  paymentSecret?: string;
};

function networkOfPrefix(invoice: string): BitcoinNetwork | undefined {
  // ln + bech32 prefix + optional amount; the bech32 separator is the last '1'.
  const hrp = invoice.toLowerCase().slice(0, invoice.lastIndexOf('1'));
  const m = /^ln([a-z]+?)(\d+[munp]?)?$/.exec(hrp);
  if (!m) return undefined;
  return (Object.keys(NETWORKS) as BitcoinNetwork[]).find((n) => NETWORKS[n].bech32 === m[1]);
}

/**
 * Decodes and checks a BOLT11 string (checksum, signature, fields). Throws LightningError
 * BAD_INVOICE with the reason when it is not a valid invoice.
 */
export function decodeBolt11(invoice: string): DecodedInvoice {
  if (typeof invoice !== 'string' || invoice.length < 10 || invoice.length > 7089) {
    throw new LightningError('BAD_INVOICE', 'invoice must be a BOLT11 string');
  }
  const network = networkOfPrefix(invoice);
  if (!network) throw new LightningError('BAD_INVOICE', 'invoice has an unknown network prefix');
  let d: ReturnType<typeof bolt11.decode>;
  try {
    d = bolt11.decode(invoice, NETWORKS[network]);
  } catch (err) {
    throw new LightningError('BAD_INVOICE', `invalid BOLT11 invoice: ${(err as Error).message}`, { cause: err });
  }
  const t = d.tagsObject;
  if (!t.payment_hash || !isHex64(t.payment_hash)) {
    throw new LightningError('BAD_INVOICE', 'invoice has no payment hash');
  }
  let amountMsat: number | undefined;
  if (d.millisatoshis != null) {
    amountMsat = Number(d.millisatoshis);
    if (!isPositiveMsat(amountMsat)) throw new LightningError('BAD_INVOICE', 'invoice amount is out of range');
  }
  const createdAt = d.timestamp!;
  const expiresAt = d.timeExpireDate ?? createdAt + DEFAULT_EXPIRY_SECONDS;
  return {
    bolt11: invoice,
    network,
    paymentHash: t.payment_hash,
    amountMsat,
    createdAt,
    expiresAt,
    ...(t.description !== undefined ? { description: t.description } : {}),
    ...(t.purpose_commit_hash !== undefined ? { descriptionHash: t.purpose_commit_hash } : {}),
    payeeNodeKey: d.payeeNodeKey!,
    ...(t.payment_secret !== undefined ? { paymentSecret: t.payment_secret } : {}),
  };
}

export type CreateBolt11Params = {
  /** hex secp256k1 secret key of the issuing node; signs the invoice. */
  nodeSecret: string;
  paymentHash: string;
  paymentSecret: string;
  amountMsat: number;
  /** unix seconds */
  timestamp: number;
  expirySeconds: number;
  description?: string;
  descriptionHash?: string;
  network?: BitcoinNetwork;
};

/**
 * Encodes and signs a real BOLT11 invoice. With a description hash the invoice carries the
 * `h` field (NIP-57 zaps), otherwise the `d` field (the description, possibly empty).
 */
export function createBolt11(p: CreateBolt11Params): string {
  if (!isPositiveMsat(p.amountMsat)) throw new LightningError('BAD_REQUEST', 'amount must be a positive integer of msat');
  if (!isHex64(p.paymentHash) || !isHex64(p.paymentSecret)) {
    throw new LightningError('BAD_REQUEST', 'payment hash and secret must be 32-byte hex');
  }
  if (p.descriptionHash !== undefined && !isHex64(p.descriptionHash)) {
    throw new LightningError('BAD_REQUEST', 'description_hash must be 32-byte lowercase hex');
  }
  const tags: { tagName: string; data: string | number }[] = [
    { tagName: 'payment_hash', data: p.paymentHash },
    { tagName: 'payment_secret', data: p.paymentSecret },
    p.descriptionHash !== undefined
      ? { tagName: 'purpose_commit_hash', data: p.descriptionHash }
      : { tagName: 'description', data: p.description ?? '' },
    { tagName: 'expire_time', data: p.expirySeconds },
    { tagName: 'min_final_cltv_expiry', data: 18 },
  ];
  if (p.descriptionHash === undefined && Buffer.byteLength(p.description ?? '', 'utf8') > MAX_DESCRIPTION_BYTES) {
    throw new LightningError('BAD_REQUEST', `description is longer than ${MAX_DESCRIPTION_BYTES} bytes; use description_hash`);
  }
  const unsigned = bolt11.encode({
    network: NETWORKS[p.network ?? DEV_NETWORK],
    millisatoshis: String(p.amountMsat),
    timestamp: p.timestamp,
    tags,
  });
  const signed = bolt11.sign(unsigned, p.nodeSecret);
  if (!signed.paymentRequest) throw new LightningError('INTERNAL', 'bolt11 signing produced no invoice');
  return signed.paymentRequest;
}
