// The Footprint dashboard: stats with filters, live visitors, the profile explorer, failed events and the consent
// ledger, all read from the admin API. Plain DOM, one chart library (uPlot).
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { ApiError, get, token } from './api.js';
import { addDays, dateTime, duration, isoDay, num, pct } from './format.js';

// ----- tiny DOM helpers -----------------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) if (c != null && c !== false) el.append(c.nodeType ? c : String(c));
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const clear = (el, ...children) => {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null));
  return el;
};
const skeleton = (rows = 5) => h('div', { class: 'skeleton', 'aria-busy': 'true' }, Array.from({ length: rows }, () => h('div', { class: 'bone' })));
const empty = (text, hint) => h('div', { class: 'empty' }, h('p', null, text), hint ? h('p', { class: 'hint' }, hint) : null);
const failure = (e) => h('div', { class: 'empty error' }, h('p', null, e instanceof ApiError ? `${e.message} (${e.code})` : String(e)));

// ----- state, kept in the URL hash so every view is a link ------------------------------------------------------
const DIM_LABELS = {
  page: 'Page', entry_page: 'Entry page', exit_page: 'Exit page', referrer: 'Referrer', utm_source: 'UTM source',
  utm_medium: 'UTM medium', utm_campaign: 'UTM campaign', device: 'Device', browser: 'Browser', os: 'OS', country: 'Country', event: 'Event',
};
const PERIODS = { today: 'Today', '7d': 'Last 7 days', '30d': 'Last 30 days', month: 'This month', '90d': 'Last 90 days', custom: 'Custom' };
const state = { tab: 'overview', site: '', period: '30d', from: '', to: '', interval: 'day', filters: {}, tz: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC' };

function readHash() {
  const [tab, query] = location.hash.replace(/^#\/?/, '').split('?');
  const p = new URLSearchParams(query || '');
  state.tab = ['overview', 'profiles', 'failed', 'consent'].includes(tab) ? tab : 'overview';
  state.site = p.get('site') || state.site;
  state.period = PERIODS[p.get('period')] ? p.get('period') : '30d';
  state.from = p.get('from') || '';
  state.to = p.get('to') || '';
  state.interval = ['hour', 'day', 'week'].includes(p.get('interval')) ? p.get('interval') : 'day';
  state.filters = {};
  for (const d of Object.keys(DIM_LABELS)) if (p.has(d)) state.filters[d] = p.get(d);
}
function writeHash(changes) {
  Object.assign(state, changes);
  const p = new URLSearchParams({ site: state.site, period: state.period });
  if (state.period === 'custom') p.set('from', state.from), p.set('to', state.to);
  if (state.interval !== 'day') p.set('interval', state.interval);
  for (const [d, v] of Object.entries(state.filters)) p.set(d, v);
  location.hash = `#/${state.tab}?${p}`;
}
function range() {
  const today = new Date();
  let from = addDays(today, -29);
  let to = today;
  if (state.period === 'today') from = today;
  else if (state.period === '7d') from = addDays(today, -6);
  else if (state.period === '90d') from = addDays(today, -89);
  else if (state.period === 'month') from = new Date(today.getFullYear(), today.getMonth(), 1);
  else if (state.period === 'custom' && state.from && state.to) return { from: state.from, to: state.to };
  return { from: isoDay(from), to: isoDay(to) };
}
const query = (extra) => ({ site: state.site, ...range(), tz: state.tz, ...state.filters, ...extra });
const addFilter = (dim, value) => writeHash({ filters: { ...state.filters, [dim]: value } });
const dropFilter = (dim) => {
  const filters = { ...state.filters };
  delete filters[dim];
  writeHash({ filters });
};
const label = (dim, value) => {
  if (value !== '') return value;
  return { referrer: 'Direct / none', page: '(unknown)', entry_page: '(unknown)', exit_page: '(unknown)' }[dim] || '(none)';
};

// ----- shell ----------------------------------------------------------------------------------------------------
let sites = [];
let liveTimer = 0;

async function start() {
  try {
    sites = (await get('/sites')).sites;
  } catch (e) {
    if (e.status === 401) return login(e.code === 'invalid_admin_token' ? 'That token is not valid.' : '');
    return clear($('#app'), failure(e));
  }
  readHash();
  if (!sites.some((s) => s.id === state.site)) state.site = sites[0]?.id || '';
  if (!start.listening) {
    start.listening = true;
    window.addEventListener('hashchange', () => {
      readHash();
      render();
    });
  }
  render();
}

function login(message) {
  const input = h('input', { type: 'password', name: 'token', placeholder: 'Admin token', autocomplete: 'current-password', required: true });
  clear($('#app'), h('main', { class: 'login' }, h('form', {
    class: 'card',
    onsubmit: (ev) => {
      ev.preventDefault();
      token.set(input.value.trim());
      start();
    },
  }, h('h1', null, logo(), 'Footprint'), h('p', null, 'Enter the admin token (printed by the collector at start, or admin_token in its config).'),
  message ? h('p', { class: 'bad' }, message) : null, input, h('button', { type: 'submit' }, 'Open dashboard'))));
  input.focus();
}

const logo = () => h('span', { class: 'logo', 'aria-hidden': 'true' });

function render() {
  const tabs = [['overview', 'Overview'], ['profiles', 'Profiles'], ['failed', 'Failed events'], ['consent', 'Consent ledger']];
  const siteSelect = h('select', { 'aria-label': 'Site', onchange: (e) => writeHash({ site: e.target.value }) },
    sites.map((s) => h('option', { value: s.id, selected: s.id === state.site }, s.id)));
  const live = h('span', { class: 'live', title: 'Visitors active in the last 30 minutes' }, h('i'), h('b', { 'data-live': '' }, '–'), ' current visitors');
  const header = h('header', { class: 'top' },
    h('a', { class: 'brand', href: '#/overview' }, logo(), 'Footprint'), siteSelect, live,
    h('nav', null, tabs.map(([id, name]) => h('a', { href: `#/${id}?site=${encodeURIComponent(state.site)}`, class: state.tab === id ? 'on' : null }, name))),
    h('button', { class: 'link', onclick: () => (token.clear(), login('')) }, 'Sign out'));
  const main = h('main');
  clear($('#app'), header, main);
  refreshLive(live);
  clearInterval(liveTimer);
  liveTimer = setInterval(() => refreshLive(live), 30000);
  if (!state.site) return main.append(empty('No sites are configured.', 'Add a [[sites]] entry to the config file.'));
  ({ overview, profiles, failed, consent })[state.tab](main);
}

async function refreshLive(el) {
  try {
    const r = await get('/stats/live', { site: state.site });
    $('b', el).textContent = num(r.visitors);
    $('b', el).dataset.value = r.visitors;
  } catch (e) {
    /* the badge just stays as it was */
  }
}

// ----- overview -------------------------------------------------------------------------------------------------
const KPIS = [
  ['visitors', 'Unique visitors', num], ['sessions', 'Visits', num], ['pageviews', 'Page views', num],
  ['views_per_visit', 'Views per visit', (v) => v.toFixed(2)], ['bounce_rate', 'Bounce rate', pct],
  ['visit_duration_ms', 'Visit duration', duration], ['engaged_ms', 'Engaged time', duration], ['scroll_depth', 'Scroll depth', (v) => `${Math.round(v)}%`],
];

function overview(main) {
  const periodSelect = h('select', { 'aria-label': 'Date range', onchange: (e) => writeHash({ period: e.target.value }) },
    Object.entries(PERIODS).map(([k, v]) => h('option', { value: k, selected: k === state.period }, v)));
  const r = range();
  const from = h('input', { type: 'date', value: r.from, 'aria-label': 'From' });
  const to = h('input', { type: 'date', value: r.to, 'aria-label': 'To' });
  const custom = h('span', { class: 'custom' }, from, '–', to, h('button', { onclick: () => writeHash({ period: 'custom', from: from.value, to: to.value }) }, 'Apply'));
  const chips = Object.entries(state.filters).map(([d, v]) =>
    h('button', { class: 'chip', title: 'Remove filter', onclick: () => dropFilter(d) }, `${DIM_LABELS[d]} is ${label(d, v)}`, h('span', { 'aria-hidden': 'true' }, ' ×')));
  main.append(
    h('div', { class: 'bar' }, periodSelect, state.period === 'custom' ? custom : h('button', { class: 'link', onclick: () => writeHash({ period: 'custom', from: r.from, to: r.to }) }, 'Custom range'),
      h('span', { class: 'tz' }, `${r.from} → ${r.to} · ${state.tz}`), chips.length ? h('span', { class: 'chips' }, chips) : null),
  );
  const kpis = h('section', { class: 'kpis' }, KPIS.map(([k, name]) => h('div', { class: 'kpi', 'data-kpi': k }, h('span', null, name), h('strong', null, h('span', { class: 'bone small' })))));
  const chart = h('section', { class: 'card chart' });
  const grid = h('div', { class: 'grid' });
  main.append(kpis, chart, grid);
  get('/stats/overview', query()).then((r) => {
    for (const [k, , fmt] of KPIS) {
      const v = r.totals[k];
      const el = $(`[data-kpi="${k}"] strong`, kpis);
      el.textContent = fmt(v);
      el.dataset.value = v;
    }
  }, (e) => kpis.replaceChildren(failure(e)));
  timeseries(chart);
  grid.append(
    breakdown('Pages', [['page', 'Top pages'], ['entry_page', 'Entry pages'], ['exit_page', 'Exit pages']]),
    breakdown('Sources', [['referrer', 'Referrers'], ['utm_source', 'UTM source'], ['utm_medium', 'UTM medium'], ['utm_campaign', 'UTM campaign']]),
    breakdown('Devices', [['device', 'Device'], ['browser', 'Browser'], ['os', 'OS']]),
    heatmap(), events(), funnel(),
  );
}

let plot = null;
function timeseries(card) {
  const intervals = h('span', { class: 'seg' }, ['hour', 'day', 'week'].map((i) => h('button', { class: state.interval === i ? 'on' : null, onclick: () => writeHash({ interval: i }) }, i)));
  const body = h('div', { class: 'plot' }, skeleton(6));
  clear(card, h('div', { class: 'head' }, h('h2', null, 'Visitors and page views'), intervals), body);
  get('/stats/timeseries', query({ interval: state.interval })).then((r) => {
    const pts = r.points;
    if (!pts.some((p) => p.pageviews || p.visitors)) return clear(body, empty('No visits in this range yet.', 'Send events with the script tag or any Segment library — or run `cargo xtask demo-data`.'));
    const xs = pts.map((p) => Date.parse(p.bucket.length === 10 ? p.bucket + 'T00:00' : p.bucket) / 1000);
    const data = [xs, pts.map((p) => p.visitors), pts.map((p) => p.pageviews)];
    clear(body);
    body.dataset.points = pts.length;
    const css = getComputedStyle(document.documentElement);
    const accent = css.getPropertyValue('--accent').trim() || '#4f46e5';
    const muted = css.getPropertyValue('--accent-2').trim() || '#a5b4fc';
    const width = () => Math.max(280, body.clientWidth);
    if (plot) plot.destroy();
    plot = new uPlot({
      width: width(), height: 260, legend: { show: true }, cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ stroke: css.getPropertyValue('--muted'), grid: { show: false }, space: 70,
        values: state.interval === 'hour' ? undefined : (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleDateString('en-GB', { day: 'numeric', month: 'short' })) }, { stroke: css.getPropertyValue('--muted'), grid: { stroke: css.getPropertyValue('--line') }, values: (u, v) => v.map(num) }],
      series: [{}, { label: 'Visitors', stroke: accent, width: 2, fill: accent + '22', points: { show: pts.length < 40 } }, { label: 'Page views', stroke: muted, width: 1.5, points: { show: false } }],
    }, data, body);
    new ResizeObserver(() => plot && plot.setSize({ width: width(), height: 260 })).observe(body);
  }, (e) => clear(body, failure(e)));
}

function breakdown(title, dims) {
  let current = dims[0][0];
  const list = h('div', { class: 'rows' });
  const tabs = h('span', { class: 'seg' });
  const card = h('section', { class: 'card', 'data-panel': title.toLowerCase() }, h('div', { class: 'head' }, h('h2', null, title), tabs), list);
  const load = () => {
    clear(tabs, dims.map(([d, name]) => h('button', { class: d === current ? 'on' : null, onclick: () => ((current = d), load()) }, name)));
    clear(list, skeleton());
    const metric = current === 'page' ? 'pageviews' : current === 'exit_page' ? 'sessions' : 'visitors';
    const metricName = { pageviews: 'Views', sessions: 'Exits', visitors: 'Visitors' }[metric];
    get('/stats/breakdown', query({ by: current, limit: 10 })).then((r) => {
      if (!r.rows.length) return clear(list, empty('Nothing to show for this range.'));
      const max = Math.max(...r.rows.map((x) => x[metric]), 1);
      clear(list, h('div', { class: 'row th' }, h('span', null, DIM_LABELS[current]), h('span', null, metricName), h('span', null, current === 'page' ? 'Visitors' : 'Bounce')),
        r.rows.map((x) => h('button', { class: 'row', 'data-dim': current, 'data-value': x.value, title: `Filter: ${DIM_LABELS[current]} is ${label(current, x.value)}`, onclick: () => addFilter(current, x.value) },
          h('span', { class: 'name' }, h('i', { style: `width:${(100 * x[metric]) / max}%` }), h('em', null, label(current, x.value))),
          h('span', { 'data-metric': metric }, num(x[metric])),
          h('span', { class: 'muted' }, current === 'page' ? num(x.visitors) : pct(x.bounce_rate)))));
    }, (e) => clear(list, failure(e)));
  };
  load();
  return card;
}

function heatmap() {
  const body = h('div', { class: 'heat' }, skeleton(4));
  const card = h('section', { class: 'card', 'data-panel': 'heatmap' }, h('div', { class: 'head' }, h('h2', null, 'Most active hours'), h('span', { class: 'muted' }, 'page views, local time')), body);
  get('/stats/heatmap', query()).then((r) => {
    const m = r.heatmap.pageviews;
    const max = Math.max(1, ...m.flat());
    const days = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
    clear(body, h('span'), Array.from({ length: 24 }, (_, i) => h('span', { class: 'hl' }, i % 3 ? '' : i)),
      m.map((row, d) => [h('span', { class: 'dl' }, days[d]), row.map((v, hr) => h('span', { class: 'cell', title: `${days[d]} ${hr}:00 — ${num(v)} page views`, style: `--a:${v ? 0.12 + (0.88 * v) / max : 0}` }))]));
  }, (e) => clear(body, failure(e)));
  return card;
}

function events() {
  const body = h('div', { class: 'rows' }, skeleton(4));
  const card = h('section', { class: 'card', 'data-panel': 'events' }, h('div', { class: 'head' }, h('h2', null, 'Custom events and goals')), body);
  get('/stats/events', query({ limit: 10 })).then((r) => {
    if (!r.events.length) return clear(body, empty('No custom events in this range.', 'footprint.track("Signed Up") records one.'));
    clear(body, h('div', { class: 'row th' }, h('span', null, 'Event'), h('span', null, 'Visitors'), h('span', null, 'Conversion')),
      r.events.map((x) => h('button', { class: 'row', 'data-dim': 'event', 'data-value': x.name, onclick: () => addFilter('event', x.name) },
        h('span', { class: 'name' }, h('i', { style: `width:${100 * x.conversion_rate}%` }), h('em', null, x.name, h('small', null, ` · ${num(x.events)} events`))),
        h('span', null, num(x.visitors)), h('span', { class: 'muted' }, pct(x.conversion_rate)))));
  }, (e) => clear(body, failure(e)));
  return card;
}

function funnel() {
  const key = `footprint.funnel.${state.site}`;
  const input = h('textarea', { rows: 4, 'aria-label': 'Funnel steps', spellcheck: 'false' }, localStorage.getItem(key) || 'page:/\npage:/pricing\npage:/signup\nevent:Signed Up');
  const body = h('div', { class: 'funnel' });
  const run = () => {
    const steps = input.value.split('\n').map((s) => s.trim()).filter(Boolean);
    localStorage.setItem(key, steps.join('\n'));
    if (steps.length < 2) return clear(body, empty('A funnel needs at least two steps.', 'One per line: page:/path or event:Name'));
    clear(body, skeleton(steps.length));
    const p = new URLSearchParams(query());
    steps.forEach((s) => p.append('step', s));
    get('/stats/funnel', p).then((r) => {
      const first = Math.max(1, r.steps[0]?.visitors || 0);
      clear(body, r.steps.map((s, i) => h('div', { class: 'fstep' }, h('div', { class: 'flabel' }, h('b', null, `${i + 1}. `), s.step.replace(/^(page|event):/, ''), h('span', { class: 'muted' }, ` ${num(s.visitors)} visitors · ${pct(s.conversion_rate)}${i ? ` · ${num(s.dropped)} dropped` : ''}`)),
        h('div', { class: 'fbar' }, h('i', { style: `width:${(100 * s.visitors) / first}%` })))));
    }, (e) => clear(body, failure(e)));
  };
  const card = h('section', { class: 'card', 'data-panel': 'funnel' }, h('div', { class: 'head' }, h('h2', null, 'Funnel'), h('span', { class: 'muted' }, 'steps in order, within one visit')),
    h('div', { class: 'fform' }, input, h('button', { onclick: run }, 'Update')), body);
  run();
  return card;
}
// ----- profiles -------------------------------------------------------------------------------------------------
function profiles(main) {
  const kind = h('select', { 'aria-label': 'Identifier type' }, ['user_id', 'email', 'anonymous_id', 'phone'].map((k) => h('option', { value: k }, k)));
  const value = h('input', { type: 'search', placeholder: 'user-42, ada@example.com, …', 'aria-label': 'Identifier', required: true });
  const result = h('div', null, empty('Look up a person by any identifier.', 'Shows the single customer view: identifiers, traits, consent history and the event timeline.'));
  main.append(h('section', { class: 'card' }, h('h2', null, 'Profile explorer'),
    h('form', { class: 'search', onsubmit: (e) => (e.preventDefault(), lookup(kind.value, value.value.trim(), result)) }, kind, value, h('button', { type: 'submit' }, 'Find'))), result);
}

async function lookup(type, value, out) {
  clear(out, skeleton(6));
  let p;
  try {
    p = await get('/profiles/lookup', { site: state.site, type, value });
  } catch (e) {
    if (e.status === 404 && e.code !== 'not_found') return clear(out, empty(`No profile for ${type} “${value}”.`, 'Only visitors who gave analytics consent have a profile.'));
    if (e.status === 404) return clear(out, empty('Profile lookup is not available on this collector yet.'));
    return clear(out, failure(e));
  }
  const kv = (obj) => h('dl', { class: 'kv' }, Object.entries(obj || {}).map(([k, v]) => [h('dt', null, k), h('dd', null, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
  const ids = (p.identifiers || []).map((i) => h('li', null, h('code', null, i.kind || i.type || ''), ' ', i.value ?? ''));
  const granted = (c) => Object.entries(c || {}).filter(([, v]) => v === true).map(([k]) => k).join(', ') || 'nothing';
  const consentRows = p.consent_history || [];
  const timeline = h('ol', { class: 'timeline' });
  const more = h('button', { class: 'link' }, 'Load more');
  out.replaceChildren(h('section', { class: 'card profile', 'data-profile': p.id },
    h('div', { class: 'head' }, h('h2', null, `Profile #${p.id}`), h('span', { class: 'muted' }, `first seen ${dateTime(p.first_seen)} · last seen ${dateTime(p.last_seen)} · ${num(p.sessions ?? 0)} visits · ${num(p.events ?? 0)} events`)),
    h('div', { class: 'cols' }, h('div', null, h('h3', null, 'Identifiers'), h('ul', { class: 'ids' }, ids)), h('div', null, h('h3', null, 'Traits'), Object.keys(p.traits || {}).length ? kv(p.traits) : h('p', { class: 'muted' }, 'No traits.')),
      h('div', null, h('h3', null, 'Consent'), consentRows.length ? h('ul', { class: 'ids' }, consentRows.map((c) => h('li', null, dateTime(c.at), ' · ', granted(c.categories), c.source ? ` · ${c.source}` : ''))) : p.consent ? h('p', null, `${granted(p.consent.categories)} (as of ${dateTime(p.consent.as_of)})`) : h('p', { class: 'muted' }, 'No consent recorded.'))),
    h('h3', null, 'Timeline'), timeline, more));
  let cursor = '';
  const page = async () => {
    more.disabled = true;
    try {
      const r = await get(`/profiles/${encodeURIComponent(p.id)}/events`, cursor ? { limit: 50, before: cursor } : { limit: 50 });
      for (const e of r.events || []) timeline.append(h('li', null, h('time', null, dateTime(e.timestamp)), h('b', null, e.type === 'track' ? e.name : e.type), h('span', { class: 'muted' }, ` ${e.url ? new URL(e.url, location.href).pathname : ''}${e.bot ? ' · bot' : ''}`)));
      cursor = r.next || '';
      more.hidden = !cursor;
      if (!timeline.children.length) timeline.append(h('li', { class: 'muted' }, 'No events.'));
    } catch (e) {
      timeline.append(h('li', { class: 'muted' }, `Timeline unavailable: ${e.message}`));
      more.hidden = true;
    }
    more.disabled = false;
  };
  more.onclick = page;
  page();
}

// ----- failed events --------------------------------------------------------------------------------------------
function failed(main) {
  const body = h('div', null, skeleton(5));
  main.append(h('section', { class: 'card' }, h('div', { class: 'head' }, h('h2', null, 'Failed events'), h('span', { class: 'muted' }, 'rejected at ingest and kept with their reason, last 30 days')), body));
  get('/quarantine', { site: state.site, tz: state.tz, samples: 3 }).then((r) => {
    if (!r.codes.length) return clear(body, empty('No failed events. Everything sent was accepted.'));
    clear(body, h('p', { 'data-failed-total': r.total }, h('strong', null, num(r.total)), ' events rejected'),
      r.codes.map((c) => h('details', { class: 'code', 'data-code': c.code }, h('summary', null, h('code', null, c.code), h('b', null, num(c.count)), h('span', { class: 'muted' }, `last ${dateTime(c.last_received_at)}`)),
        c.samples.map((s) => h('div', { class: 'sample' }, h('p', null, s.reason, h('span', { class: 'muted' }, ` · ${dateTime(s.received_at)}${s.message_id ? ' · ' + s.message_id : ''}`)), h('pre', null, pretty(s.payload)))))));
  }, (e) => clear(body, failure(e)));
}
const pretty = (text) => {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (e) {
    return text;
  }
};

// ----- consent ledger -------------------------------------------------------------------------------------------
function consent(main) {
  const rows = h('tbody');
  const more = h('button', { class: 'link', hidden: true }, 'Older entries');
  const body = h('div', null, skeleton(5));
  main.append(h('section', { class: 'card' }, h('div', { class: 'head' }, h('h2', null, 'Consent ledger'), h('span', { class: 'muted' }, 'every consent decision, append-only (GDPR Art. 7)')), body));
  let cursor = null;
  const page = () => get('/consent-ledger', cursor ? { site: state.site, cursor, limit: 50 } : { site: state.site, limit: 50 }).then((r) => {
    if (!cursor && !r.entries.length) return clear(body, empty('No consent decisions recorded yet.', 'The SDK records one when footprint.consent(…) is called.'));
    if (!cursor) clear(body, h('div', { class: 'scroll' }, h('table', null, h('thead', null, h('tr', null, ['When', 'Who', 'Granted', 'Source', 'Policy'].map((t) => h('th', null, t)))), rows)), more);
    for (const e of r.entries) {
      rows.append(h('tr', { 'data-entry': e.id }, h('td', null, dateTime(e.at)), h('td', null, e.profile_id ? `profile #${e.profile_id}` : e.visitor || '–'),
        h('td', null, e.categories.length ? e.categories.map((c) => h('span', { class: 'tag' }, c)) : h('span', { class: 'tag off' }, 'nothing')), h('td', null, e.source), h('td', null, e.policy_version || '–')));
    }
    cursor = r.next_cursor;
    more.hidden = !cursor;
  }, (e) => clear(body, failure(e)));
  more.onclick = page;
  page();
}

start();
