/**
 * Text from etcd made safe for a terminal: C0 and C1 control characters (ESC starts the CSI and OSC sequences that
 * move the cursor, erase lines, set the title or, in some terminals, write files), DEL, the Unicode line
 * separators and the bidirectional formatting characters (they reorder what is shown, CVE-2021-42574) are
 * replaced by their `\u` escapes, as JSON writes them; every other character is kept.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `s` with every character a terminal would act on, rather than show, written as `\uXXXX`. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
