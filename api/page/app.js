// gamingd's live page. Each chart loads its table's recent windows with a
// pull query, then follows the table's SSE stream (the row after each
// change) and redraws at most once a second. The two tables are asked for
// again when their streams move. All the table streams come through one
// EventSource (/v1/streams/a,b,c: events typed by table), since a browser
// opens at most six connections to a host. With API keys on, the key is
// asked for once, kept in sessionStorage, and sent as a Bearer header
// (fetch) or as access_token (EventSource cannot send headers); EventSource
// resumes with Last-Event-ID by itself after a reconnect.
"use strict";

const CHARTS = [
  {id: "active_players", table: "gaming_active_players_5min", group: "game_id", label: "game_name",
   values: ["active_players_count"], windows: 24},
  {id: "revenue", table: "gaming_revenue_analytics", group: "game_id", label: "game_name",
   values: ["total_revenue"], windows: 24},
  {id: "genres", table: "gaming_genre_engagement", group: "game_genre", values: ["total_activities"], windows: 24},
  {id: "segments", table: "gaming_player_segments_hourly", group: "player_segment", values: ["player_count"], windows: 24},
  {id: "lag", table: "gaming_processing_lag_1min", group: "game_id", label: "game_name",
   values: ["avg_lag_ms"], windows: 30},
  {id: "quality", table: "gaming_data_quality_5min", group: null,
   values: ["game_enrichment_rate", "player_enrichment_rate"], windows: 24},
];
const TABLES = [
  {id: "top_performers", table: "gaming_top_performers_hourly", order: "total_score",
   columns: ["player_username", "game_id", "total_score", "activity_count", "best_score"]},
  {id: "high_value", table: "gaming_high_value_players_daily", order: "total_spent",
   columns: ["player_username", "game_name", "total_spent", "purchase_count"]},
];
const MAX_SERIES = 10;
const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

let apiKey = sessionStorage.getItem("gamingd_key") || "";
const errors = [];

function setStatus(text, bad) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = "status" + (bad ? " bad" : "");
}

// ---- the API, with the key when there is one ----

function askForKey(message) {
  return new Promise((resolve) => {
    const form = document.getElementById("key-form");
    document.getElementById("key-error").textContent = message || "";
    form.hidden = false;
    form.onsubmit = (ev) => {
      ev.preventDefault();
      apiKey = document.getElementById("key-input").value.trim();
      sessionStorage.setItem("gamingd_key", apiKey);
      form.hidden = true;
      resolve();
    };
  });
}

async function api(path) {
  for (;;) {
    const resp = await fetch(path, {headers: apiKey ? {Authorization: "Bearer " + apiKey} : {}});
    if (resp.status === 401) {
      await askForKey(apiKey ? "That key was not accepted." : "");
      continue;
    }
    const body = await resp.json();
    if (!resp.ok) throw new Error(path + ": " + (body.message || resp.status));
    return body;
  }
}

function streamUrl(tables) {
  return "/v1/streams/" + tables.join(",") + (apiKey ? "?access_token=" + encodeURIComponent(apiKey) : "");
}

// ---- charts ----

function groupOf(spec, row) { return spec.group ? row[spec.group] : "all"; }

function addRow(spec, row) {
  const g = groupOf(spec, row);
  if (g == null) return;
  for (const col of spec.values) {
    const key = spec.values.length > 1 ? col : g;
    if (!spec.points.has(key)) spec.points.set(key, new Map());
    spec.points.get(key).set(row.window_start, row[col]);
    if (spec.label && row[spec.label]) spec.names.set(key, row[spec.label]);
    else if (!spec.names.has(key)) spec.names.set(key, spec.values.length > 1 ? col.replace(/_/g, " ") : g);
  }
  if (row.window_start > spec.newest) spec.newest = row.window_start;
  spec.size = row.window_end - row.window_start;
  spec.dirty = true;
}

// The last `windows` windows; the series with the largest latest values.
function frame(spec) {
  const first = spec.newest - spec.size * (spec.windows - 1);
  const xs = [];
  for (let w = first; w <= spec.newest; w += spec.size) xs.push(w);
  const latest = (pts) => { let v = null; for (const w of xs) if (pts.has(w)) v = pts.get(w); return v || 0; };
  const keys = [...spec.points.keys()].sort((a, b) => latest(spec.points.get(b)) - latest(spec.points.get(a)))
    .slice(0, MAX_SERIES);
  for (const [k, pts] of spec.points) for (const w of pts.keys()) if (w < first) pts.delete(w);
  return {keys, data: [xs.map((w) => w / 1000), ...keys.map((k) => xs.map((w) => {
    const v = spec.points.get(k).get(w);
    return v === undefined ? null : v;
  }))]};
}

function render(spec) {
  if (!spec.dirty || spec.newest < 0) return;
  spec.dirty = false;
  const {keys, data} = frame(spec);
  const shape = keys.join("\u0000");
  const el = document.getElementById(spec.id);
  if (!spec.plot || spec.shape !== shape) {
    if (spec.plot) spec.plot.destroy();
    el.querySelector(".plot").textContent = "";
    spec.shape = shape;
    spec.plot = new uPlot({
      width: el.clientWidth - 16, height: 220,
      series: [{}, ...keys.map((k, i) => ({label: String(spec.names.get(k)), stroke: COLORS[i % COLORS.length], width: 1.5}))],
      axes: [{}, {size: 60}],
      legend: {live: false},
    }, data, el.querySelector(".plot"));
  } else {
    spec.plot.setData(data);
  }
  let points = 0;
  for (let i = 1; i < data.length; i++) for (const v of data[i]) if (v !== null) points++;
  el.dataset.points = points;
}

async function startChart(spec) {
  Object.assign(spec, {points: new Map(), names: new Map(), newest: -1, size: 0, dirty: false});
  const el = document.getElementById(spec.id);
  el.insertAdjacentHTML("beforeend", "<h2></h2><div class='plot'><p class='empty'>waiting for data…</p></div>");
  el.querySelector("h2").textContent = el.dataset.title;
  el.dataset.points = 0;
  const latest = await api("/v1/tables/" + spec.table + "?limit=1");
  if (latest.rows.length) {
    const w = latest.rows[0].window_start, size = latest.rows[0].window_end - w;
    let path = "/v1/tables/" + spec.table + "?limit=10000&from=" + (w - size * (spec.windows - 1));
    for (let page = 0; page < 5 && path; page++) {
      const body = await api(path);
      body.rows.forEach((row) => addRow(spec, row));
      path = body.next_cursor ? "/v1/tables/" + spec.table + "?limit=10000&from=" + (w - size * (spec.windows - 1)) +
        "&cursor=" + body.next_cursor : null;
    }
  }
  render(spec);
}

// ---- tables ----

async function refreshTable(spec) {
  const body = await api("/v1/tables/" + spec.table + "?order_by=" + spec.order + "&desc=true&limit=10");
  const el = document.getElementById(spec.id);
  const rows = body.rows.map((r) => "<tr>" + spec.columns.map((c) => {
    const v = r[c];
    const text = typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : (v == null ? "" : String(v));
    return "<td>" + text.replace(/[&<>"]/g, (ch) => "&#" + ch.charCodeAt(0) + ";") + "</td>";
  }).join("") + "</tr>").join("");
  el.querySelector("table").innerHTML = "<tr>" + spec.columns.map((c) => "<th>" + c.replace(/_/g, " ") + "</th>").join("") +
    "</tr>" + rows;
  el.dataset.rows = body.rows.length;
}

async function startTable(spec) {
  const el = document.getElementById(spec.id);
  el.insertAdjacentHTML("beforeend", "<h2></h2><table></table>");
  el.querySelector("h2").textContent = el.dataset.title;
  el.dataset.rows = 0;
  await refreshTable(spec);
  setInterval(() => {
    if (spec.moved) {
      spec.moved = false;
      refreshTable(spec).catch((err) => errors.push(String(err)));
    }
  }, 3000);
}

// ---- start ----

window.gamingdPage = {
  status() {
    const charts = {}, tables = {};
    CHARTS.forEach((c) => { charts[c.id] = Number(document.getElementById(c.id).dataset.points || 0); });
    TABLES.forEach((t) => { tables[t.id] = Number(document.getElementById(t.id).dataset.rows || 0); });
    return {charts, tables, errors};
  },
};

(async function main() {
  try {
    await api("/v1/tables"); // asks for a key first, when one is needed
    await Promise.all([...CHARTS.map(startChart), ...TABLES.map(startTable)]);
    const es = new EventSource(streamUrl([...CHARTS, ...TABLES].map((s) => s.table)));
    for (const spec of CHARTS) es.addEventListener(spec.table, (e) => addRow(spec, JSON.parse(e.data)));
    for (const spec of TABLES) es.addEventListener(spec.table, () => { spec.moved = true; });
    es.onerror = () => setStatus("reconnecting…", true);
    es.onopen = () => setStatus("live");
  } catch (err) {
    errors.push(String(err));
    setStatus(String(err), true);
  }
  setInterval(() => CHARTS.forEach(render), 1000);
})();
