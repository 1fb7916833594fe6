/**
 * L7 (HTTP) decisions of the agent's proxy: which rules apply to a flow the
 * data path redirected, and whether a request matches them.
 *
 * A flow reaches the proxy when some ingress allow rule with `rules.http`
 * covers its destination port for its source identity (the native lookup's
 * "redirect"). Its requests are then allowed when either some matching rule
 * for that identity and port has no HTTP section (an L4 allow: everything
 * passes, as in Cilium) or one of the HTTP rules matches: method, path and host
 * are regular expressions over the whole value, headers must be present (and
 * equal, when a value is given, to the field's value: repeated lines joined by
 * ",", as Envoy does). CONNECT (a tunnel once the pod answers 2xx) is allowed
 * only by a rule with a method pattern that matches it, never by a rule
 * without a method (Envoy refuses CONNECT unless configured for it). An
 * upgrade (`Connection: upgrade` with `Upgrade`, h2c aside: the proxy drops
 * that one and decides the plain request), a tunnel once the pod answers 101,
 * is allowed only by a rule naming the Upgrade header (`Upgrade: websocket`,
 * or `Upgrade` for any protocol); Envoy answers 403 to an upgrade its listener
 * is not configured for. X-Forwarded-For is matched as the pod receives it:
 * the client's address alone (the proxy drops what the client sent).
 *
 * The proxy decides natively, with RE2 on the normalised target
 * (native/src/proxy/l7rules.h, http1.h); `wiremesh apply` refuses patterns RE2
 * cannot run. This twin (tests run both over one table) uses JavaScript
 * RegExp: the same answers for patterns in both syntaxes; RE2-only syntax
 * (`(?P<name>`, inline flags) throws here.
 */
import type { IdentityUniverse } from './compile.js';
import { ruleEntries } from './compile.js';
import type { ContainerPort } from './ports.js';
import type { HttpRule, Rule } from './rules.js';

export interface HttpRequestView {
  method: string;
  /** The request target's path (with query). */
  path: string;
  host: string;
  /** Lowercase names, as the pod receives them: `x-forwarded-for` is the client's address alone. */
  headers: Record<string, string | string[] | undefined>;
}

/** Comma-separated tokens of a header's lines, lowercased (repeated lines are one list). */
function tokens(v: string | string[] | undefined): string[] {
  return (Array.isArray(v) ? v : v === undefined ? [] : [v]).flatMap((x) => x.split(',')).map((t) => t.trim().toLowerCase());
}

/** An upgrade as the proxy frames one (http1.cc parse_fields): Connection names upgrade, Upgrade is there, and no Upgrade line asks for h2c. */
export function isUpgrade(req: HttpRequestView): boolean {
  return tokens(req.headers.connection).includes('upgrade') && req.headers.upgrade !== undefined && !tokens(req.headers.upgrade).includes('h2c');
}

/** The rules deciding a redirected flow: 'all' (an L4 allow applies), or HTTP rules with the rule they came from. */
export type L7Rules = 'all' | Array<{ rule: Rule; http: HttpRule }>;

/**
 * Ingress rules selecting the endpoint (compiled selectedBy; its container
 * ports resolve named ports, as compileEndpoint does) that allow `identity`
 * on TCP `port`.
 */
export function l7Rules(ingress: Rule[], u: IdentityUniverse, identity: number, port: number, ownPorts: readonly ContainerPort[] = []): L7Rules {
  const covers = (r: Rule) => ruleEntries(r, u, ownPorts).filter((e) => (e.identity === identity || e.identity === 0) && (e.proto === 0 || e.proto === 6) && port >= e.lo && port <= e.hi);
  // A deny covering the flow wins over every allow, as in the data path. Without this a kept-alive
  // connection asking again after a deny was added got its old rules (or 'all'): no request is allowed.
  if (ingress.some((r) => r.deny && covers(r).length > 0)) return [];
  const out: Array<{ rule: Rule; http: HttpRule }> = [];
  for (const r of ingress) {
    if (r.deny) continue;
    for (const e of covers(r)) {
      if (!e.http) return 'all';
      for (const h of e.http) out.push({ rule: r, http: h });
    }
  }
  return out;
}

const cache = new Map<string, RegExp>();
function whole(re: string): RegExp {
  let r = cache.get(re);
  if (!r) {
    r = new RegExp(`^(?:${re})$`);
    if (cache.size > 10_000) cache.clear();
    cache.set(re, r);
  }
  return r;
}

export function httpRuleMatches(h: HttpRule, req: HttpRequestView): boolean {
  // A CONNECT's 2xx is a tunnel past every later decision: only a rule naming a method that matches it allows it.
  if (req.method === 'CONNECT' && h.method === undefined) return false;
  // So is an upgrade's 101: only a rule that names the Upgrade header allows one.
  if (isUpgrade(req) && !(h.headers ?? []).some((x) => x.name === 'upgrade')) return false;
  if (h.method !== undefined && !whole(h.method).test(req.method)) return false;
  if (h.path !== undefined && !whole(h.path).test(req.path)) return false;
  if (h.host !== undefined && !whole(h.host).test(req.host)) return false;
  for (const x of h.headers ?? []) {
    const v = req.headers[x.name];
    if (v === undefined) return false;
    // repeated lines are one field, joined by commas (RFC 9110 5.3): the value must equal that, not one of them
    if (x.value !== undefined && (Array.isArray(v) ? v.join(',') : v) !== x.value) return false;
  }
  return true;
}

/** The verdict for one request: allowed, and the rule that allowed it (none for 'all'). */
export function decideRequest(rules: L7Rules, req: HttpRequestView): { allowed: boolean; rule?: Rule } {
  if (rules === 'all') return { allowed: true };
  const hit = rules.find((r) => httpRuleMatches(r.http, req));
  return hit ? { allowed: true, rule: hit.rule } : { allowed: false };
}
