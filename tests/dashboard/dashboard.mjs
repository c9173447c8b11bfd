// Loads the dashboard in real headless Chromium against a running collector and checks that the numbers it
// renders are the ones the stats API answers; saves screenshots under tests/artifacts/. Started by
// tests/tests/dashboard.rs with FP_URL, FP_TOKEN, FP_SITE, FP_FROM, FP_TO, FP_TZ in the environment.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const { FP_URL: base, FP_TOKEN: token, FP_SITE: site, FP_FROM: from, FP_TO: to, FP_TZ: tz } = process.env;
const artifacts = join(dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');
mkdirSync(artifacts, { recursive: true });
const failures = [];
const check = (what, actual, expected) => {
  const ok = JSON.stringify(actual) === JSON.stringify(expected);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${JSON.stringify(actual)}${ok ? '' : ` (API: ${JSON.stringify(expected)})`}`);
  if (!ok) failures.push(what);
};
const api = async (path, params) => {
  const qs = new URLSearchParams({ site, from, to, tz, ...params });
  const res = await fetch(`${base}/admin/v1${path}?${qs}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, timezoneId: tz, colorScheme: 'light' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));

  // Without a token: the sign-in form.
  await page.goto(`${base}/`);
  await page.waitForSelector('form input[name=token]');
  errors.length = 0; // the 401 that asked for the token is expected
  await page.fill('form input[name=token]', token);
  await page.click('form button[type=submit]');
  await page.waitForSelector('header nav');
  const view = `${base}/#/overview?site=${site}&period=custom&from=${from}&to=${to}`;
  await page.goto(view);
  await page.waitForSelector('[data-kpi="visitors"] strong[data-value]');

  const overview = (await api('/stats/overview')).totals;
  for (const k of ['visitors', 'sessions', 'pageviews', 'bounce_rate', 'visit_duration_ms']) {
    check(`KPI ${k}`, Number(await page.getAttribute(`[data-kpi="${k}"] strong`, 'data-value')), overview[k]);
  }
  check('visitors as shown', await page.textContent('[data-kpi="visitors"] strong'), String(overview.visitors));

  await page.waitForSelector('[data-panel="pages"] button.row');
  const pages = (await api('/stats/breakdown', { by: 'page', limit: 10 })).rows;
  check('top pages, in order', await page.$$eval('[data-panel="pages"] button.row', (rs) => rs.map((r) => r.dataset.value)), pages.map((r) => r.value));
  check('top pages, views', await page.$$eval('[data-panel="pages"] button.row [data-metric]', (rs) => rs.map((r) => r.textContent)), pages.map((r) => String(r.pageviews)));

  await page.waitForSelector('.plot[data-points] canvas');
  const series = (await api('/stats/timeseries', { interval: 'day' })).points;
  check('chart points', Number(await page.getAttribute('.plot', 'data-points')), series.length);
  await page.waitForSelector('[data-panel="funnel"] .fstep');
  await page.waitForSelector('[data-panel="heatmap"] .cell', { state: 'attached' });
  check('heatmap cells', await page.$$eval('[data-panel="heatmap"] .cell', (cs) => cs.length), 7 * 24);
  await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });

  // Clicking a device filters everything.
  await page.click('[data-panel="devices"] button.row[data-value="mobile"]');
  await page.waitForSelector('.chip');
  await page.waitForFunction(() => document.querySelector('[data-kpi="visitors"] strong')?.dataset.value !== undefined && location.hash.includes('device=mobile'));
  await page.waitForSelector('[data-kpi="visitors"] strong[data-value]');
  const mobile = (await api('/stats/overview', { device: 'mobile' })).totals;
  check('filtered visitors (device=mobile)', Number(await page.getAttribute('[data-kpi="visitors"] strong', 'data-value')), mobile.visitors);
  check('filtered page views', Number(await page.getAttribute('[data-kpi="pageviews"] strong', 'data-value')), mobile.pageviews);

  // Failed events and the consent ledger.
  await page.click('header nav a[href^="#/failed"]');
  await page.waitForSelector('[data-failed-total]');
  const quarantine = await fetch(`${base}/admin/v1/quarantine?site=${site}&tz=${tz}`, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.json());
  check('failed events total', Number(await page.getAttribute('[data-failed-total]', 'data-failed-total')), quarantine.total);
  check('failed event codes', await page.$$eval('details.code', (ds) => ds.map((d) => d.dataset.code)), quarantine.codes.map((c) => c.code));
  await page.click('header nav a[href^="#/consent"]');
  await page.waitForSelector('tr[data-entry]');
  const ledger = await fetch(`${base}/admin/v1/consent-ledger?site=${site}`, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.json());
  check('consent ledger rows', await page.$$eval('tr[data-entry]', (rs) => rs.length), ledger.entries.length);

  // The profile explorer: the single customer view of one visitor.
  await page.click('header nav a[href^="#/profiles"]');
  await page.selectOption('form.search select', 'anonymous_id');
  await page.fill('form.search input', 'dash-1');
  await page.click('form.search button');
  await page.waitForSelector('[data-profile]');
  const profile = await fetch(`${base}/admin/v1/profiles/lookup?site=${site}&type=anonymous_id&value=dash-1`, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.json());
  check('profile shown', await page.getAttribute('[data-profile]', 'data-profile'), String(profile.id));
  await page.waitForSelector('.timeline li');
  check('timeline entries', await page.$$eval('.timeline li', (ls) => ls.length), Math.min(50, profile.events));
  await page.screenshot({ path: join(artifacts, 'dashboard-profile.png'), fullPage: true });

  // A phone-sized screen.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, timezoneId: tz, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  await small.goto(`${base}/`);
  await small.evaluate((t) => localStorage.setItem('footprint.admin_token', t), token);
  await small.goto(view);
  await small.reload();
  await small.waitForSelector('[data-panel="devices"] button.row');
  await small.waitForSelector('.plot[data-points] canvas');
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check('no horizontal scrolling on a phone', overflow <= 0, true);
  await small.screenshot({ path: join(artifacts, 'dashboard-phone.png'), fullPage: true });
  check('no script errors', errors, []);
} catch (e) {
  failures.push(String(e));
  console.error(e);
  for (const p of browser.contexts().flatMap((c) => c.pages())) await p.screenshot({ path: join(artifacts, 'dashboard-failure.png'), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(`dashboard test: ${failures.length} check(s) failed: ${failures.join(', ')}`);
  process.exit(1);
}
console.log(`dashboard test: all checks passed; screenshots in ${artifacts}`);
