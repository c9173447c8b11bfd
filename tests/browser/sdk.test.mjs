// The browser SDK in real headless Chromium against the real collector, checked by what the collector stored
// (issue 3, item 6). Run by `cargo xtask test` after `cargo xtask build-sdk` (node --test tests/browser/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { contextFor, events, launch, pageHtml, query, ready, startCollector, until } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Runs `body` with a fresh collector and a browser context serving `html` under /t/. */
async function withSdk(html, body, contextOptions = {}) {
  const collector = await startCollector();
  const context = await contextFor(browser, collector.url, html, contextOptions);
  const errors = [];
  try {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    await body({ collector, context, page, base: collector.url });
    assert.deepEqual(errors, [], "no exception reached the page");
  } finally {
    await context.close();
    await collector.stop();
  }
}

/** Ingest requests the collector has answered so far (its /metrics). */
async function ingestRequests(collector) {
  const text = await (await fetch(`${collector.url}/metrics`)).text();
  return +text.match(/^footprint_http_requests_total\{kind="ingest"\} (\d+)$/m)[1];
}

/** `count` calls of `footprint.track(name, { i })` in one task of `page`. */
const burst = (page, name, count) =>
  page.evaluate(([name, count]) => {
    for (let i = 0; i < count; i++) footprint.track(name, { i });
  }, [name, count]);

/** Waits until the collector stored `count` events named `name`; answers how many it stored and how many distinct
 * messageIds they have. */
const storedOnce = (db, name, count, ms) =>
  until(() => {
    const r = query(db, `SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events WHERE name = '${name}'`)[0];
    return r.n >= count && r;
  }, ms, `${count} '${name}' events`);

/** How many workers the page runs, once the DevTools events that arrived while this process was blocked have been
 * handled (the database probes run synchronously): a worker shows up in `page.workers()` only after its attach
 * event, which can come in while the last probe runs. With `expected` above 0, waits up to 5 s for that many. */
async function workerCount(page, expected) {
  await new Promise((r) => setTimeout(r, 100));
  if (expected > 0) await until(() => page.workers().length >= expected, 5_000, `${expected} worker(s) in the page`).catch(() => {});
  return page.workers().length;
}

const named = (db, name) => events(db, `name = '${name}'`);
const noDuplicates = (rows) => assert.equal(new Set(rows.map((r) => r.message_id)).size, rows.length, "no duplicate messageId");

test("page views: the initial load and SPA navigations, each once", async () => {
  await withSdk(() => pageHtml({ data: { "flush-interval": "100" } }), async ({ collector, page, base }) => {
    await page.goto(`${base}/t/home?utm_source=news&email=a%40b.example`);
    await ready(page);
    await page.evaluate(() => {
      history.replaceState({}, "", location.href); // same URL: not a page view
      history.pushState({}, "", "/t/products");
      history.pushState({}, "", "/t/products"); // same URL again: not a page view
      history.replaceState({}, "", "/t/products");
      history.pushState({}, "", "/t/products/42");
      location.hash = "reviews"; // an anchor, not a route
    });
    await page.goBack(); // popstate back to /t/products/42 (the hash step)
    await page.goBack(); // popstate to /t/products
    const rows = await until(() => {
      const r = events(collector.db, "type = 'page'");
      return r.length >= 4 && r;
    });
    await page.evaluate(() => footprint.flush());
    await new Promise((r) => setTimeout(r, 300)); // a window for an unwanted duplicate to arrive (not a readiness wait)
    const all = events(collector.db, "type = 'page'");
    assert.deepEqual(all.map((e) => e.path), ["/t/home", "/t/products", "/t/products/42", "/t/products"]);
    noDuplicates(all);
    assert.equal(rows[0].url, `${base}/t/home?utm_source=news`, "the e-mail parameter is scrubbed");
    assert.equal(rows[0].utm_source, "news");
    // The context's page facts come from the page (js/host.js writes the context the module decided).
    assert.equal(rows[0].context.library.name, "footprint-sdk");
    assert.ok(rows[0].context.locale && rows[0].context.screen.width > 0, "locale and screen");
    assert.equal(rows[1].referrer, `${base}/t/home?utm_source=news`, "the previous view is the referrer");
  });
});

test("clicks, outbound links and downloads; navigation still happens", async () => {
  const body = `
    <button id="buy" class="btn primary">Buy   now</button>
    <nav id="top"><a id="internal" href="/t/about">About</a>
    <a class="ext" href="http://outbound.test/landing?token=secret">Elsewhere</a>
    <a id="file" href="/t/files/report.pdf" download>Report\n  ${"é".repeat(70)}</a></nav>
    <form id="signup" action="/t/join?email=x%40y.example" method="post" onsubmit="event.preventDefault()">
      <input name="email" value="private@example.com"><button type="submit">Join</button></form>`;
  await withSdk(
    () => pageHtml({ data: { "flush-interval": "100" }, body }),
    async ({ collector, context, page, base }) => {
      await context.route("http://outbound.test/**", (r) => r.fulfill({ status: 200, contentType: "text/html", body: "<p>outbound</p>" }));
      await page.goto(`${base}/t/shop`);
      await ready(page);
      await page.click("#buy");
      await page.click("#file");
      await page.click("form button");
      await until(() => named(collector.db, "Form Submitted").length === 1);
      await page.click("a.ext");
      await page.waitForURL("http://outbound.test/**");
      const outbound = await until(() => named(collector.db, "Outbound Link Clicked")[0], 10_000, "the outbound click");
      assert.equal(outbound.properties.href, "http://outbound.test/landing", "token scrubbed");
      assert.equal(outbound.properties.selector, "nav#top > a.ext:nth-of-type(2)");
      const click = named(collector.db, "Element Clicked")[0];
      assert.deepEqual(click.properties, { selector: "button#buy", text: "Buy now", tag: "button" });
      const download = named(collector.db, "File Downloaded")[0];
      assert.equal(download.properties.extension, "pdf");
      assert.equal(download.properties.text, "Report " + "é".repeat(57), "64 characters, whitespace collapsed");
      assert.equal(download.properties.href, `${base}/t/files/report.pdf`);
      const form = named(collector.db, "Form Submitted")[0];
      assert.deepEqual(form.properties, { selector: "form#signup", id: "signup", action: `${base}/t/join`, method: "post" });
      const stored = JSON.stringify(query(collector.db, "SELECT * FROM events"));
      assert.ok(!stored.includes("private@example.com"), "input values never leave the page");
    },
  );
});

test("consent required and denied: no storage writes, no identifier in any stored event", async () => {
  await withSdk(() => pageHtml({ data: { consent: "required", "flush-interval": "100" }, body: "<button id=b>B</button>" }), async ({ collector, page, base }) => {
    await page.goto(`${base}/t/private`);
    await ready(page);
    await page.evaluate(() => {
      footprint.consent({ analytics: false, marketing: false });
      footprint.identify("user-1", { email: "a@b.example" });
      footprint.track("Denied Event", { n: 1 });
      footprint.reset();
      footprint.flush();
    });
    await page.click("#b");
    // Everything the page sent reached the collector: stored, or quarantined if the collector refuses anonymous events.
    const arrived = () => query(collector.db, "SELECT count(*) AS n FROM events").concat(query(collector.db, "SELECT count(*) AS n FROM quarantine"));
    await until(() => arrived().reduce((t, r) => t + r.n, 0) >= 4, 10_000, "page, consent, track and click events");
    const storage = await page.evaluate(async () => ({
      local: localStorage.length,
      session: sessionStorage.length,
      cookie: document.cookie,
      idb: indexedDB.databases ? (await indexedDB.databases()).length : 0,
    }));
    assert.deepEqual(storage, { local: 0, session: 0, cookie: "", idb: 0 });
    const rows = events(collector.db);
    for (const e of rows) {
      assert.equal(e.anonymous_id, null);
      assert.equal(e.user_id, null);
      assert.equal(e.context.consent.categoryPreferences.analytics, false);
      assert.equal(e.context.cookieless, true);
      assert.equal(e.session_id, null);
    }
    const quarantined = JSON.stringify(query(collector.db, "SELECT payload FROM quarantine"));
    assert.ok(!quarantined.includes("anonymousId") && !quarantined.includes("user-1"), "nor in a quarantined one");
    assert.ok(!JSON.stringify(rows).includes("user-1"), "identify waits for consent");
  });
});

test("consent granted: the anonymous ID is stored and reused after a reload", async () => {
  await withSdk(() => pageHtml({ data: { consent: "required", "flush-interval": "100" } }), async ({ collector, page, base }) => {
    await page.goto(`${base}/t/a`);
    await ready(page);
    await page.evaluate(() => {
      footprint.consent({ analytics: true });
      footprint.track("Before Reload");
    });
    const stored = await page.evaluate(() => localStorage.getItem("fp_id"));
    assert.match(stored, /^[0-9a-f-]{36}\.\d+$/);
    const id = stored.split(".")[0];
    await until(() => named(collector.db, "Before Reload").length === 1);
    await page.reload();
    await ready(page);
    await page.evaluate(() => footprint.track("After Reload"));
    const after = await until(() => named(collector.db, "After Reload")[0]);
    assert.equal(named(collector.db, "Before Reload")[0].anonymous_id, id);
    assert.equal(after.anonymous_id, id, "same ID after the reload, without a new consent() call");
    assert.equal(after.context.consent.source, "stored");
    assert.ok(after.session_id, "a session ID with consent");
  });
});

test("Global Privacy Control keeps marketing off", async () => {
  await withSdk(() => pageHtml({ data: { consent: "implied", "flush-interval": "100" } }), async ({ collector, context, page, base }) => {
    await context.addInitScript(() => Object.defineProperty(Navigator.prototype, "globalPrivacyControl", { get: () => true }));
    await page.goto(`${base}/t/gpc?gclid=ad-click-id`);
    await ready(page);
    await page.evaluate(() => {
      footprint.consent({ analytics: true, marketing: true });
      footprint.track("With GPC");
    });
    const e = await until(() => named(collector.db, "With GPC")[0]);
    assert.equal(e.context.consent.gpc, true);
    assert.equal(e.context.consent.categoryPreferences.marketing, false);
    assert.equal(e.context.consent.categoryPreferences.analytics, true);
    assert.ok(!e.url.includes("gclid"), "ad click IDs are scrubbed without marketing consent");
  });
});

test("texts of every kind go in as JSON: quotes, newlines, non-ASCII, blanks and padded IDs", async () => {
  await withSdk(() => pageHtml({ data: { consent: "implied", "flush-interval": "50" } }), async ({ collector, page, base }) => {
    await page.goto(`${base}/t/texts`);
    await ready(page);
    await page.evaluate(() => {
      footprint.track('Quote " back\\slash\nline \u00e9 \ud83d\udc63', { k: "v\u2028" });
      footprint.track(" \t ", { blank: true }); // blank: ignored
      footprint.track(42);
      footprint.track("lone \ud800"); // as in UTF-8: U+FFFD
      footprint.identify("  user 1\n", { plan: "pro" });
      footprint.group(" acme ");
      footprint.page("Home");
    });
    const rows = await until(() => {
      const r = events(collector.db, "type != 'page' OR name = 'Home'");
      return r.length >= 6 && r;
    }, 10_000, "the events");
    assert.deepEqual(rows.map((r) => r.name ?? r.type), ['Quote " back\\slash\nline \u00e9 \ud83d\udc63', "42", "lone \ufffd", "identify", "group", "Home"]);
    assert.equal(rows[0].properties.k, "v\u2028");
    assert.equal(rows[3].user_id, "user 1", "IDs are trimmed of ASCII whitespace");
    assert.equal(rows[4].user_id, "user 1");
    assert.equal(await page.evaluate(() => localStorage.getItem("fp_u")), '"user 1"');
    await page.reload();
    await ready(page);
    await page.evaluate(() => footprint.track("After Reload"));
    const after = await until(() => events(collector.db, "name = 'After Reload'")[0], 10_000, "the event after the reload");
    assert.equal(after.user_id, "user 1", "the user ID is read back from the device");
    // An earlier version stored the user ID as it is, not as a JSON string.
    await page.evaluate(() => localStorage.setItem("fp_u", 'legacy "user"'));
    await page.reload();
    await ready(page);
    await page.evaluate(() => footprint.track("After Upgrade"));
    const upgraded = await until(() => events(collector.db, "name = 'After Upgrade'")[0], 10_000, "the event after the upgrade");
    assert.equal(upgraded.user_id, 'legacy "user"');
  });
});

test("offline, then online: everything is delivered", async () => {
  await withSdk(() => pageHtml({ data: { "flush-interval": "50" } }), async ({ collector, context, page, base }) => {
    await page.goto(`${base}/t/offline`);
    await ready(page);
    await until(() => events(collector.db, "type = 'page'").length === 1);
    let failed = 0;
    page.on("requestfailed", (r) => r.url().includes("/v1/batch") && failed++);
    await context.setOffline(true);
    await page.evaluate(() => {
      for (let i = 0; i < 25; i++) footprint.track("Offline " + i);
    });
    await until(() => failed >= 1, 10_000, "a failed send while offline");
    assert.equal(named(collector.db, "Offline 0").length, 0);
    await context.setOffline(false); // fires "online": the SDK retries at once
    const rows = await until(() => {
      const r = events(collector.db, "name LIKE 'Offline %'");
      return r.length >= 25 && r;
    }, 15_000, "the offline events");
    assert.equal(rows.length, 25);
    noDuplicates(rows);
  });
});

test("a page load with a queued backlog delivers it once", async () => {
  await withSdk(() => pageHtml({ data: { consent: "implied", "flush-interval": "50" } }), async ({ collector, context, base }) => {
    let page = await context.newPage();
    await page.goto(`${base}/t/backlog`);
    await ready(page);
    await until(() => events(collector.db, "type = 'page'").length === 1);
    let failed = 0;
    page.on("requestfailed", (r) => r.url().includes("/v1/batch") && failed++);
    await context.setOffline(true);
    await page.evaluate(() => {
      for (let i = 0; i < 10; i++) footprint.track("Backlog " + i);
    });
    await until(() => failed >= 1, 10_000, "a failed send");
    const keys = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("fp_q.")));
    assert.equal(keys.length, 1, "the batch waits on the device");
    await page.close(); // offline: no beacon; the batch stays on the device
    await context.setOffline(false);
    page = await context.newPage();
    await page.goto(`${base}/t/backlog`);
    await ready(page);
    const rows = await until(() => {
      const r = events(collector.db, "name LIKE 'Backlog %'");
      return r.length >= 10 && r;
    }, 15_000, "the backlog");
    await until(() => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("fp_q.")).length === 0), 5_000, "the device copy removed");
    assert.equal(events(collector.db, "name LIKE 'Backlog %'").length, 10, "delivered once");
    noDuplicates(rows);
  });
});

test("a burst of 3,000 track() calls: exactly 3,000 stored, no duplicates", async () => {
  await withSdk(() => pageHtml(), async ({ collector, page, base }) => {
    await page.goto(`${base}/t/burst`);
    await ready(page);
    const before = await ingestRequests(collector);
    await burst(page, "Burst", 3000);
    const rows = await storedOnce(collector.db, "Burst", 3000, 30_000);
    assert.deepEqual(rows, { n: 3000, d: 3000 });
    const seen = query(collector.db, "SELECT count(DISTINCT json_extract(properties, '$.i')) AS n FROM events WHERE name = 'Burst'")[0].n;
    assert.equal(seen, 3000, "every call, not just 3,000 rows");
    // Batches of at most 62 KiB (the beacon budget) — about 390 of these events — but several go in one request
    // (counted by the collector: the requests come from the send worker).
    const requests = (await ingestRequests(collector)) - before;
    assert.ok(requests >= 1 && requests <= 3, `3,000 events in ${requests} requests`);
    assert.equal(await workerCount(page, 1), 1, "the send worker runs");
  });
});

test("a burst the collector first answers 503 is retried after Retry-After and stored once", async () => {
  await withSdk(() => pageHtml(), async ({ collector, context, page, base }) => {
    // The first two requests with the burst (sent by the send worker: over 16 KiB) get 503 and Retry-After: 1.
    let refused = 0;
    await context.route(`${collector.url}/v1/batch**`, (route) => {
      if (route.request().postData()?.includes('"Retried"') && refused < 2) {
        refused++;
        return route.fulfill({ status: 503, headers: { "Retry-After": "1", "Access-Control-Allow-Origin": "*" }, body: '{"code":"overloaded","message":"try later"}' });
      }
      return route.continue();
    });
    await page.goto(`${base}/t/retried`);
    await ready(page);
    await burst(page, "Retried", 1000);
    const rows = await storedOnce(collector.db, "Retried", 1000, 20_000);
    assert.deepEqual(rows, { n: 1000, d: 1000 });
    assert.equal(refused, 2, "the collector's 503s reached the sender");
  });
});

test("a page on another origin than the collector: the module loads and the send worker's requests pass CORS", async () => {
  const collector = await startCollector();
  // The page from a second collector's www directory: another port, so another origin (both on loopback, which
  // Chromium's private-network checks require of a page that calls a loopback address).
  const pages = mkdtempSync(join(tmpdir(), "fp-sdk-site-"));
  writeFileSync(join(pages, "cross.html"), pageHtml({ src: `${collector.url}/footprint.js` }));
  process.env.FOOTPRINT_WWW_DIR = pages;
  const site = await startCollector().finally(() => delete process.env.FOOTPRINT_WWW_DIR);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${site.url}/cross.html`);
    await ready(page);
    await burst(page, "Cross Origin", 1000);
    const rows = await storedOnce(collector.db, "Cross Origin", 1000, 15_000);
    assert.deepEqual(rows, { n: 1000, d: 1000 });
    assert.equal(await workerCount(page, 1), 1, "through the send worker");
    assert.equal(events(collector.db, "type = 'page'")[0].url, `${site.url}/cross.html`, "the page's own URL");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await site.stop();
    await collector.stop();
    rmSync(pages, { recursive: true, force: true });
  }
});

test("a page whose Content-Security-Policy forbids workers sends from the page itself", async () => {
  const head = `<meta http-equiv="Content-Security-Policy" content="worker-src 'none'">
<script>window.__violations = []; document.addEventListener("securitypolicyviolation", (e) => __violations.push(e.effectiveDirective))</script>`;
  await withSdk(() => pageHtml({ head }), async ({ collector, page, base }) => {
    await page.goto(`${base}/t/strict`);
    await ready(page);
    await page.evaluate(() => {
      for (let i = 0; i < 500; i++) footprint.track("Strict", { i });
      footprint.flush();
    });
    assert.deepEqual(await storedOnce(collector.db, "Strict", 500, 15_000), { n: 500, d: 500 });
    assert.ok((await page.evaluate(() => __violations)).includes("worker-src"), "the browser refused the worker");
  });
});

test("page hide mid-batch: the rest leaves by beacon", async () => {
  // A long flush interval and a large batch size: nothing is sent by fetch before the page goes away.
  await withSdk(() => pageHtml({ data: { "flush-interval": "600000", "batch-size": "500" } }), async ({ collector, page, base }) => {
    const fetches = [];
    page.on("request", (r) => r.url().includes("/v1/batch") && fetches.push(r.resourceType()));
    await page.goto(`${base}/t/leaving`);
    await ready(page);
    await page.evaluate(() => {
      for (let i = 0; i < 7; i++) footprint.track("Leaving " + i);
    });
    await page.goto("about:blank");
    const rows = await until(() => {
      const r = events(collector.db, "name LIKE 'Leaving %'");
      return r.length >= 7 && r;
    }, 10_000, "the events sent on page hide");
    assert.equal(rows.length, 7);
    assert.equal(events(collector.db, "type = 'page'").length, 1, "the page view went in the same beacon");
    assert.ok(!fetches.includes("fetch"), `no fetch before the page hid: ${fetches}`);
  });
});

test("the npm package: init() loads the module next to index.js, throws invalid options synchronously, delivers", async () => {
  const npm = new URL("../../sdk/dist/npm/", import.meta.url);
  const html = () => `<!doctype html><html><head><meta charset="utf-8"><title>npm</title></head><body><script type="module">
import { init, track } from "/npm/index.js";
track("Before Init", { early: true }); // queued until the module runs
try { init({ writeKey: "wk_demo", batchSize: "0" }); } catch (e) { window.__code = e.code; }
await init({ writeKey: "wk_demo", flushInterval: 100 });
track("Npm Event", { n: 1 });
window.__started = true;
</script></body></html>`;
  await withSdk(html, async ({ collector, context, page, base }) => {
    await context.route(`${base}/npm/**`, (route) => {
      const name = new URL(route.request().url()).pathname.split("/").pop();
      const type = name.endsWith(".wasm") ? "application/wasm" : "text/javascript";
      route.fulfill({ status: 200, contentType: type, body: readFileSync(new URL(name, npm)) });
    });
    await page.goto(`${base}/t/npm`);
    await page.waitForFunction(() => window.__started, null, { timeout: 15_000 });
    assert.equal(await page.evaluate(() => window.__code), "invalid_number");
    const rows = await until(() => {
      const r = events(collector.db, "name IN ('Before Init', 'Npm Event')");
      return r.length >= 2 && r;
    }, 10_000, "the npm page's events");
    assert.deepEqual(rows.map((r) => r.name), ["Before Init", "Npm Event"]);
    assert.equal(events(collector.db, "type = 'page'").length, 1, "the initial page view");
    assert.equal(await workerCount(page, 0), 0, "a few events go from the page: no worker");
    // A burst: its requests (over 16 KiB) go through the send worker, whose code is this bundle's own functions.
    await page.evaluate(() => import("/npm/index.js").then(({ track }) => {
      for (let i = 0; i < 1000; i++) track("Npm Burst", { i });
    }));
    assert.deepEqual(await storedOnce(collector.db, "Npm Burst", 1000, 15_000), { n: 1000, d: 1000 });
    assert.equal(await workerCount(page, 1), 1, "the send worker runs");
  });
});
