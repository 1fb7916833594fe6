/**
 * A list held as its lone element when it has exactly one, else as the array (issue 16): a one-element array is
 * 56 B (a 32 B array object and its 24 B elements store, 64-bit V8 without pointer compression, as Node ships it),
 * and the lists the agent holds per node of every connected cluster nearly always have one element: a node
 * record's addresses and pod CIDRs (records/node.ts HeldNode), a peer's roaming set (wireguard/peer.ts), the node
 * addresses a peer claims (agent/peerstate.ts). Elements are strings, so a held string is always a lone element.
 */

/** What a lone list is held as: its one element, or the array of any other length. */
export type LoneList = string | readonly string[];

/** `list` as held: its lone element, else `list` itself (not copied). */
export function holdList(list: readonly string[]): LoneList {
  return list.length === 1 ? list[0]! : list;
}

/** A held list read back as an array: a new one for a lone element, else the held array itself. */
export function readList(held: LoneList): readonly string[] {
  return typeof held === 'string' ? [held] : held;
}
