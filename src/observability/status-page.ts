/**
 * The status page (`GET /` with `Accept: text/html`): one self-contained document, inline CSS and
 * script, no CDN and no build step, so it works on an air-gapped network. The markup is a static
 * shell; the script fills it from `/status.json` on load and every 5 s, always through
 * `textContent` (repository names and hosts come from clients and upstreams: never parsed as HTML).
 *
 * Every number a test compares carries an id or a `data-col`; byte cells also carry the exact
 * count in `data-bytes` next to the rounded text. Colours keep a contrast of at least 4.5:1
 * (WCAG AA); layout is one column on a phone, a grid from ~40rem.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>crossdock status</title>
<style>
  :root { --fg: #1b1f24; --muted: #4a5361; --bg: #ffffff; --card: #f3f5f8; --line: #c9d0da; --accent: #0b5cad; --bad: #a4161a; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
  header, main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
  header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline; border-bottom: 1px solid var(--line); }
  h1 { font-size: 1.5rem; margin: 0; }
  h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
  .muted { color: var(--muted); }
  .grid { display: grid; gap: .75rem; grid-template-columns: repeat(auto-fit, minmax(13rem, 1fr)); }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: .75rem 1rem; }
  .card h3 { font-size: .95rem; margin: 0 0 .25rem; color: var(--muted); font-weight: 600; }
  .big { font-size: 1.6rem; font-weight: 700; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  caption { text-align: left; font-weight: 600; padding: .25rem 0; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
  td.n, th.n { text-align: right; }
  code { font: .9rem ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--card); padding: .15rem .3rem; border-radius: .25rem; word-break: break-all; }
  button { font: inherit; color: #fff; background: var(--accent); border: 0; border-radius: .35rem; padding: .3rem .8rem; cursor: pointer; }
  button:focus-visible, a:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px; }
  a { color: var(--accent); }
  meter { width: 100%; height: 1.1rem; }
  .low { color: var(--bad); font-weight: 700; }
  .row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .35rem 0; }
</style>
</head>
<body>
<header>
  <h1>crossdock</h1>
  <span>version <strong id="version">…</strong> on Node <span id="node">…</span></span>
  <span>up <strong id="uptime">…</strong></span>
  <span class="muted" id="updated" role="status" aria-live="polite">loading…</span>
</header>
<main>
  <section aria-labelledby="h-overview">
    <h2 id="h-overview">Cache</h2>
    <div class="grid">
      <div class="card"><h3>Hit ratio since start</h3><div class="big" id="ratio-total">–</div>
        <div><span id="hits-total">0</span> hits, <span id="misses-total">0</span> misses</div></div>
      <div class="card"><h3>Hit ratio, last hour</h3><div class="big" id="ratio-hour">–</div>
        <div><span id="hits-hour">0</span> hits, <span id="misses-hour">0</span> misses</div></div>
      <div class="card"><h3>Bytes served from the cache</h3><div class="big" id="bytes-cache-total" data-bytes="0">0 B</div>
        <div>from upstreams: <span id="bytes-upstream-total" data-bytes="0">0 B</span></div></div>
      <div class="card"><h3>Cache size</h3>
        <label for="cache-meter"><span id="cache-used" data-bytes="0">0 B</span> of <span id="cache-max" data-bytes="0">0 B</span> (CACHE_MAX_SIZE)</label>
        <meter id="cache-meter" min="0" max="1" value="0" low="0.8" high="0.95" optimum="0"></meter>
        <div><span id="cache-entries">0</span> entries, <span id="cache-evictions">0</span> evicted, <span id="fills-failed">0</span> failed fills</div></div>
    </div>
  </section>
  <section aria-labelledby="h-registries">
    <h2 id="h-registries">By registry</h2>
    <div class="scroll"><table id="registries-start"><caption>Since start</caption><thead></thead><tbody></tbody></table></div>
    <div class="scroll"><table id="registries-hour"><caption>Last hour</caption><thead></thead><tbody></tbody></table></div>
  </section>
  <section aria-labelledby="h-upstreams">
    <h2 id="h-upstreams">Upstreams</h2>
    <div class="scroll"><table id="upstreams"><caption>By host: requests, errors (no answer, 429, 5xx), rate limit left</caption><thead></thead><tbody></tbody></table></div>
  </section>
  <section aria-labelledby="h-fills">
    <h2 id="h-fills">Downloads in flight</h2>
    <p>Replica <span id="cluster-replica">–</span>: <span id="cluster-state">–</span></p>
    <p id="fills-none" class="muted">None right now.</p>
    <div class="scroll"><table id="fills"><caption class="muted">Blobs being written into the cache</caption><thead></thead><tbody></tbody></table></div>
  </section>
  <section aria-labelledby="h-repos">
    <h2 id="h-repos">Most requested repositories</h2>
    <p id="repos-hidden" class="muted" hidden>Names are shown to signed-in users only. <a href="/?login">Sign in</a></p>
    <ol id="repos"></ol>
  </section>
  <section aria-labelledby="h-setup">
    <h2 id="h-setup">Set up a host</h2>
    <div class="row">1. Trust the root CA: <a id="ca-link" href="/ca.crt">ca.crt</a>
      <code id="ca-url"></code><button type="button" data-copy="ca-url" aria-label="Copy the CA certificate URL">Copy</button></div>
    <div class="row">2. Point Docker at the proxy (systemd hosts, as root):
      <code id="setup-cmd"></code><button type="button" data-copy="setup-cmd" aria-label="Copy the setup command">Copy</button></div>
    <h2>Doors</h2>
    <ul>
      <li>Proxy door (HTTPS_PROXY): <code id="door-proxy"></code></li>
      <li>Registry door (hosted registry, <code>/v2/&lt;registry&gt;/&lt;name&gt;/…</code>): <code id="door-registry"></code></li>
    </ul>
    <p>Intercepted registries: <span id="registries"></span></p>
  </section>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
function bytes(n) { let i = 0; while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; } return (i === 0 ? String(n) : n.toFixed(1)) + " " + UNITS[i]; }
function ratio(r) { return r === null ? "–" : (r * 100).toFixed(1) + " %"; }
function duration(s) { const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60); return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s"; }
function setBytes(el, n) { el.textContent = bytes(n); el.dataset.bytes = String(n); }
function cell(tr, text, col, numeric) { const td = document.createElement("td"); td.textContent = text; if (col) td.dataset.col = col; if (numeric) td.className = "n"; tr.appendChild(td); return td; }
function table(id, headers, rows, key, render) {
  const t = $(id), head = document.createElement("tr");
  for (const h of headers) { const th = document.createElement("th"); th.scope = "col"; th.textContent = h; if (h !== headers[0]) th.className = "n"; head.appendChild(th); }
  t.tHead.replaceChildren(head);
  t.tBodies[0].replaceChildren(...rows.map(r => { const tr = document.createElement("tr"); tr.dataset.key = key(r); render(tr, r); return tr; }));
}
function traffic(id, view) {
  table(id, ["Registry", "Hits", "Misses", "Hit ratio", "From cache", "From upstream"], Object.entries(view.byRegistry), e => e[0], (tr, [name, t]) => {
    const th = document.createElement("th"); th.scope = "row"; th.textContent = name; tr.appendChild(th);
    cell(tr, String(t.hits), "hits", true); cell(tr, String(t.misses), "misses", true); cell(tr, ratio(t.hitRatio), "hitRatio", true);
    setBytes(cell(tr, "", "bytesFromCache", true), t.bytesFromCache); setBytes(cell(tr, "", "bytesFromUpstream", true), t.bytesFromUpstream);
  });
}
function render(s) {
  $("version").textContent = s.version; $("node").textContent = s.node; $("uptime").textContent = duration(s.uptimeSeconds);
  const all = s.traffic.sinceStart.total, hour = s.traffic.lastHour.total;
  $("ratio-total").textContent = ratio(all.hitRatio); $("hits-total").textContent = String(all.hits); $("misses-total").textContent = String(all.misses);
  $("ratio-hour").textContent = ratio(hour.hitRatio); $("hits-hour").textContent = String(hour.hits); $("misses-hour").textContent = String(hour.misses);
  setBytes($("bytes-cache-total"), all.bytesFromCache); setBytes($("bytes-upstream-total"), all.bytesFromUpstream);
  setBytes($("cache-used"), s.cache.usedBytes); setBytes($("cache-max"), s.cache.maxBytes);
  $("cache-meter").value = s.cache.maxBytes > 0 ? s.cache.usedBytes / s.cache.maxBytes : 0;
  $("cache-entries").textContent = String(s.cache.entries); $("cache-evictions").textContent = String(s.cache.evictions + s.cache.expirations); $("fills-failed").textContent = String(s.cache.fillsFailed);
  traffic("registries-start", s.traffic.sinceStart); traffic("registries-hour", s.traffic.lastHour);
  table("upstreams", ["Host", "Requests", "Errors", "Rate limit left"], s.upstreams, u => u.host, (tr, u) => {
    cell(tr, u.host); cell(tr, String(u.requests), "requests", true); cell(tr, String(u.errors), "errors", true);
    const left = u.rateLimitRemaining === undefined ? "–" : u.rateLimitRemaining + (u.rateLimitLimit === undefined ? "" : " of " + u.rateLimitLimit);
    const td = cell(tr, left, "rateLimitRemaining", true);
    if (u.rateLimitRemaining !== undefined && u.rateLimitLimit && u.rateLimitRemaining < u.rateLimitLimit * 0.1) td.className = "n low";
  });
  $("cluster-replica").textContent = s.cluster.replica;
  $("cluster-state").textContent = s.cluster.mode === "local" ? "fills this replica alone (no REDIS_URL)" : s.cluster.coordinated ? "one fill per blob across replicas (Redis)" : "Redis unreachable: fills on its own until it returns";
  $("fills-none").hidden = s.fills.length > 0; $("fills").hidden = s.fills.length === 0;
  table("fills", ["Digest", "Bytes so far", "Of", "Clients"], s.fills, f => f.digest, (tr, f) => {
    cell(tr, f.digest.slice(0, 19) + "…").title = f.digest; setBytes(cell(tr, "", "bytes", true), f.bytes);
    cell(tr, f.expectedBytes === null ? "?" : bytes(f.expectedBytes), "expectedBytes", true); cell(tr, String(f.clients), "clients", true);
  });
  $("repos-hidden").hidden = s.repositories.visible;
  $("repos").replaceChildren(...s.repositories.top.map(r => { const li = document.createElement("li"); li.dataset.requests = String(r.requests); li.textContent = r.name + " (" + r.requests + ")"; return li; }));
  $("ca-link").href = s.setup.caUrl; $("ca-url").textContent = s.setup.caUrl; $("setup-cmd").textContent = s.setup.command;
  $("door-proxy").textContent = s.doors.proxy; $("door-registry").textContent = s.doors.registry || "off";
  $("registries").textContent = s.registries.join(", ");
}
async function refresh() {
  try {
    const res = await fetch("/status.json", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "1";
  } catch (e) { $("updated").textContent = "could not refresh: " + e.message; }
}
// navigator.clipboard needs a secure context; the page is usually plain HTTP, so fall back to a selection.
document.addEventListener("click", async e => {
  const id = e.target instanceof HTMLElement ? e.target.dataset.copy : undefined;
  if (!id) return;
  const text = $(id).textContent;
  try { await navigator.clipboard.writeText(text); } catch { const r = document.createRange(); r.selectNodeContents($(id)); getSelection().removeAllRanges(); getSelection().addRange(r); document.execCommand("copy"); }
  e.target.textContent = "Copied"; setTimeout(() => { e.target.textContent = "Copy"; }, 1500);
});
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
`
