// The SDK's options (sdk/js/client.js parses them for the script tag's data-* attributes and the npm package's
// init): defaults, every option, and the stable error codes. Plain Node, no browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseOptions } from "../../sdk/js/client.js";

const base = { writeKey: "wk", collector: "https://c.example" };
const code = (options) => {
  try {
    parseOptions(options);
  } catch (e) {
    assert.ok(e instanceof Error && e.message.startsWith("footprint: invalid option"), String(e));
    return e.code;
  }
  return "accepted";
};

test("defaults", () => {
  const o = parseOptions({ writeKey: "wk_demo", collector: "https://c.example/" });
  assert.equal(o.collector, "https://c.example");
  assert.equal(o.consent, 0, "required");
  assert.deepEqual([o.flushInterval, o.batchSize, o.idLifetimeDays], [2000, 20, 395]);
  assert.equal(o.capture, 15, "everything");
  assert.equal(o.scrub, "");
});

test("every option parses (as the script tag's text, and as values)", () => {
  const o = parseOptions({
    writeKey: " wk ",
    collector: "http://127.0.0.1:8080",
    consent: "implied",
    flushInterval: "250",
    batchSize: "5",
    idLifetimeDays: "30",
    autocapture: "pageviews, forms",
    scrub: "OrderId, ,ref",
  });
  assert.equal(o.writeKey, "wk");
  assert.equal(o.consent, 1, "implied");
  assert.deepEqual([o.flushInterval, o.batchSize, o.idLifetimeDays], [250, 5, 30]);
  assert.equal(o.capture, 1 | 4, "page views and forms");
  assert.equal(o.scrub, "orderid,ref");
  const v = parseOptions({ ...base, flushInterval: 500, autocapture: ["clicks", "engagement"], scrub: ["A", "b"] });
  assert.deepEqual([v.flushInterval, v.capture, v.scrub], [500, 2 | 8, "a,b"]);
  assert.equal(parseOptions({ ...base, autocapture: false }).capture, 0);
  assert.equal(parseOptions({ ...base, autocapture: "all" }).capture, 15);
});

test("invalid options have stable codes", () => {
  assert.equal(code({ collector: "https://c.example" }), "missing_write_key");
  assert.equal(code({ writeKey: "wk" }), "invalid_collector");
  assert.equal(code({ ...base, collector: "javascript:alert(1)" }), "invalid_collector");
  assert.equal(code({ ...base, consent: "maybe" }), "invalid_consent_mode");
  assert.equal(code({ ...base, batchSize: "0" }), "invalid_number");
  assert.equal(code({ ...base, batchSize: "-1" }), "invalid_number");
  assert.equal(code({ ...base, flushInterval: "1e3" }), "invalid_number");
  assert.equal(code({ ...base, autocapture: "pageviews,mouse" }), "invalid_autocapture");
  assert.equal(code({ ...base, writekey: "x" }), "unknown_option");
});
