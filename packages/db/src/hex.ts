/** Ids and pubkeys are stored as 32-byte `bytea`; the package's API speaks lowercase hex. */
export function hexBuf(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}

/** The lowercase hex of a `bytea` value read back (a Buffer or a Uint8Array view). */
export function bufHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
