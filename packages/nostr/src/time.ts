/** Now, in the unit of `created_at` (unix seconds): the one clock every stage reads. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
