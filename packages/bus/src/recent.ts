/**
 * A bounded set of recently seen ids, the oldest forgotten first: the receiving-side guard that
 * keeps a process from delivering the same event twice (for instance one event relayed by two
 * replicas, or a bus entry seen twice).
 */
export class RecentIds {
  private readonly set = new Set<string>();
  private readonly ring: (string | undefined)[];
  private next = 0;

  constructor(readonly capacity = 50_000) {
    this.ring = new Array<string | undefined>(capacity);
  }

  /** Records the id; false when it was already recorded. */
  add(id: string): boolean {
    if (this.set.has(id)) return false;
    const old = this.ring[this.next];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.capacity;
    this.set.add(id);
    return true;
  }

  has(id: string): boolean {
    return this.set.has(id);
  }

  get size(): number {
    return this.set.size;
  }
}
