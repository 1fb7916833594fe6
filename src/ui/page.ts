/**
 * The dashboard page served by `wiremesh ui` (src/ui/server.ts). Plain HTML
 * and a script that polls /api/mesh every second and rebuilds the tables.
 * Everything from the mesh (pod names, HTTP paths in flow records) is put in
 * the page with textContent, never as HTML.
 */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wiremesh</title>
<style>
  :root { --bg: #0f172a; --card: #111c33; --line: #22304d; --text: #e2e8f0; --dim: #94a3b8; --ok: #22c55e; --warn: #f59e0b; --bad: #ef4444; --accent: #38bdf8; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font: 13px/1.45 system-ui, -apple-system, "DejaVu Sans", sans-serif; }
  header { display: flex; align-items: baseline; gap: 24px; padding: 14px 22px; border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 18px; letter-spacing: .5px; }
  header h1 span { color: var(--accent); }
  .stat { color: var(--dim); } .stat b { color: var(--text); font-size: 15px; margin-right: 3px; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px 22px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; overflow: hidden; }
  section.wide { grid-column: 1 / span 2; }
  h2 { margin: 0 0 8px; font-size: 13px; text-transform: uppercase; letter-spacing: 1px; color: var(--dim); }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--dim); font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; background: var(--ok); }
  .dot.warn { background: var(--warn); } .dot.bad { background: var(--bad); } .dot.idle { background: #475569; }
  .clusters { display: flex; gap: 12px; flex-wrap: wrap; }
  .cluster { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; min-width: 170px; }
  .cluster h3 { margin: 0 0 4px; font-size: 14px; color: var(--accent); }
  .badge { display: inline-block; padding: 0 6px; margin-right: 4px; border-radius: 4px; background: #1e293b; border: 1px solid var(--line); }
  .badge.ok { border-color: var(--ok); } .badge.bad { border-color: var(--bad); color: var(--bad); }
  .FORWARDED { color: var(--ok); } .DROPPED { color: var(--bad); }
  #error { color: var(--bad); padding: 0 22px; }
</style>
</head>
<body>
<header>
  <h1>wire<span>mesh</span></h1>
  <div class="stat"><b id="n-clusters">-</b>clusters</div>
  <div class="stat"><b id="n-nodes">-</b>nodes</div>
  <div class="stat"><b id="n-tunnels">-</b>tunnels up</div>
  <div class="stat"><b id="n-services">-</b>services</div>
  <div class="stat"><b id="n-drops">-</b>drops</div>
  <div class="stat" id="updated"></div>
</header>
<div id="error"></div>
<main>
  <section class="wide"><h2>Clusters and nodes</h2><div class="clusters" id="clusters"></div></section>
  <section class="wide"><h2>Global services</h2><table id="services"><thead><tr><th>service</th><th>VIP</th><th>affinity</th><th>backends per cluster (healthy/total)</th><th class="num">Maglev table</th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Live flow verdicts</h2><table id="flows"><thead><tr><th>time</th><th>node</th><th>verdict</th><th>source</th><th>destination</th><th>what</th><th>rule / reason</th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Tunnels</h2><table id="tunnels"><thead><tr><th>from</th><th>to</th><th>endpoint</th><th>handshake</th><th class="num">rx</th><th class="num">tx</th><th class="num">rx total</th><th class="num">tx total</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
const rate = (bps) => bps >= 1e6 ? (bps * 8 / 1e6).toFixed(1) + ' Mbit/s' : bps >= 1e3 ? (bps * 8 / 1e3).toFixed(1) + ' kbit/s' : Math.round(bps * 8) + ' bit/s';
const age = (s) => s === null || s === undefined ? 'idle (no traffic yet)' : s < 60 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
const bytes = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + ' GB' : n >= 1e6 ? (n / 1e6).toFixed(2) + ' MB' : n >= 1e3 ? (n / 1e3).toFixed(1) + ' kB' : n + ' B';
const ep = (e) => (e.pod ? (e.cluster ? e.cluster + '/' : '') + (e.namespace ? e.namespace + '/' : '') + e.pod : e.ip) + (e.port ? ':' + e.port : '');
const range = (r) => r[0] === r[1] ? String(r[0]) : r[0] + '..' + r[1];
function fill(id, rows) { const tb = document.querySelector('#' + id + ' tbody'); tb.replaceChildren(...rows); }
function render(m) {
  const up = m.tunnels.filter((t) => t.handshakeAgeS !== null && t.handshakeAgeS < 180).length;
  document.getElementById('n-clusters').textContent = m.clusters.length;
  document.getElementById('n-nodes').textContent = m.nodes.filter((n) => n.up).length + '/' + m.nodes.length;
  document.getElementById('n-tunnels').textContent = up + '/' + m.tunnels.length;
  document.getElementById('n-services').textContent = m.services.length;
  document.getElementById('n-drops').textContent = m.nodes.reduce((a, n) => a + (n.drops || 0), 0);
  document.getElementById('updated').textContent = 'updated ' + new Date(m.at).toLocaleTimeString();
  const clusters = document.getElementById('clusters');
  clusters.replaceChildren(...m.clusters.map((c) => el('div', { class: 'cluster', 'data-cluster': c }, el('h3', {}, c),
    ...m.nodes.filter((n) => n.cluster === c).map((n) => el('div', { class: 'node' },
      el('span', { class: 'dot' + (!n.up ? ' bad' : n.etcdConnected ? '' : ' warn') }), n.node,
      el('span', { class: 'stat' }, ' · ' + n.localEndpoints + ' pods · synced ' + (n.syncedClusters || []).join(', ')))))));
  fill('tunnels', m.tunnels.map((t) => el('tr', {},
    el('td', {}, t.from), el('td', {}, t.to), el('td', {}, t.endpoint || ''),
    el('td', {}, el('span', { class: 'dot' + (t.unreachableForS ? ' bad' : t.handshakeAgeS === null ? ' idle' : t.handshakeAgeS > 180 ? ' warn' : '') }), t.unreachableForS ? 'unreachable for ' + t.unreachableForS + ' s' : age(t.handshakeAgeS)),
    el('td', { class: 'num' }, rate(t.rxBps)), el('td', { class: 'num' }, rate(t.txBps)),
    el('td', { class: 'num' }, bytes(t.rxBytes)), el('td', { class: 'num' }, bytes(t.txBytes)))));
  fill('services', m.services.map((s) => el('tr', {},
    el('td', {}, s.name + (s.global ? ' (global)' : '')), el('td', {}, s.vip || ''), el('td', {}, s.affinity),
    el('td', {}, ...s.clusters.map((c) => el('span', { class: 'badge ' + (c.healthy[0] > 0 ? 'ok' : 'bad') }, c.cluster + ' ' + range(c.healthy) + '/' + c.total))),
    el('td', { class: 'num' }, s.tableSize || ''))));
  fill('flows', m.flows.slice(0, 25).map((f) => el('tr', {},
    el('td', {}, new Date(f.time).toLocaleTimeString()), el('td', {}, f.cluster + '/' + f.node),
    el('td', { class: f.verdict }, f.verdict), el('td', {}, ep(f.source)), el('td', {}, ep(f.destination)),
    el('td', {}, f.l7 ? 'HTTP ' + f.l7.method + ' ' + f.l7.path + (f.l7.status ? ' ' + f.l7.status : '') : f.protocol),
    el('td', {}, f.dropReason || f.rule || ''))));
}
async function poll() {
  try {
    const r = await fetch('/api/mesh');
    render(await r.json());
    document.getElementById('error').textContent = '';
  } catch (e) {
    document.getElementById('error').textContent = 'cannot reach the dashboard server: ' + e.message;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
