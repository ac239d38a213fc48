export type KindClass = 'regular' | 'replaceable' | 'ephemeral' | 'addressable';

export const KIND_METADATA = 0;
export const KIND_CONTACTS = 3;
export const KIND_DELETION = 5;
export const KIND_AUTH = 22242;
export const MAX_KIND = 65535;

/**
 * NIP-01 kind ranges. Kinds the NIP leaves unassigned (45..999, 40000+) are treated as
 * regular so that they are stored rather than silently dropped or replaced.
 */
export function kindClass(kind: number): KindClass {
  if (kind < 10000) return kind === 0 || kind === 3 ? 'replaceable' : 'regular';
  if (kind < 20000) return 'replaceable';
  if (kind < 30000) return 'ephemeral';
  if (kind < 40000) return 'addressable';
  return 'regular';
}

export function isReplaceable(kind: number): boolean {
  return kindClass(kind) === 'replaceable';
}

export function isEphemeral(kind: number): boolean {
  return kind >= 20000 && kind < 30000;
}

export function isAddressable(kind: number): boolean {
  return kind >= 30000 && kind < 40000;
}
