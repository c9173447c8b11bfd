// The public API around the Wasm exports, shared by the script tag (script.js) and the npm entry (npm.js).
// Tracking calls never throw into the host page: arguments are coerced, and every call is wrapped in try/catch.
// Every text goes in as JSON, from the browser's own JSON.stringify (fast, and a snapshot at call time): names and
// IDs as JSON strings, properties and traits as objects; the module never escapes them.

import { install, str } from "./capture.js";

export const METHODS = ["track", "page", "identify", "alias", "group", "reset", "flush", "consent"];

/** The option names `init` knows (camelCase; the script tag's data-* attributes map onto them). */
export const OPTIONS = ["writeKey", "collector", "consent", "flushInterval", "batchSize", "autocapture", "scrub", "idLifetimeDays"];

/** JSON of an object (or any value), undefined for none, or when it has none (cyclic, BigInt…: the event goes
 * without properties). */
const json = (value) => {
  try {
    return JSON.stringify(value ?? undefined);
  } catch (e) {}
};
const text = (value) => (value == null ? undefined : str(value));
/** An ID: a JSON string of the text trimmed of ASCII whitespace. */
const id = (value) => str(String(value).replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, ""));
const isObject = (value) => value !== null && typeof value === "object";

/** Throws the SDK's only error: an invalid option, with a stable `code`. */
const fail = (code, option) => {
  throw Object.assign(new Error("footprint: invalid option " + option + " (" + code + ")"), { code });
};

// Whole-number options and their ranges.
const NUMBERS = { flushInterval: [0, 600000], batchSize: [1, 500], idLifetimeDays: [1, 3650] };
const CAPTURE = ["pageviews", "clicks", "forms", "engagement"];

/**
 * Parses `init` options (camelCase; the script tag's data-* attributes map onto them, as text) into what the
 * module's `init` takes. Throws the SDK's only error for invalid ones.
 */
export function parseOptions(options) {
  const o = { writeKey: "", collector: "", scrub: "", consent: 0, flushInterval: 2000, batchSize: 20, capture: 15, idLifetimeDays: 395 };
  for (const name of Object.keys(options)) {
    if (options[name] == null) continue;
    const v = String(options[name]).trim().replace(/[\r\n]/g, " ");
    const range = NUMBERS[name];
    // Numbers: decimal digits only (no signs, exponents or fractions), within their range.
    if (range) /^\d{1,9}$/.test(v) && v >= range[0] && v <= range[1] ? (o[name] = +v) : fail("invalid_number", name);
    else if (name == "writeKey") o.writeKey = v;
    else if (name == "collector") o.collector = v.replace(/\/+$/, "");
    else if (name == "consent") (o.consent = ["required", "implied"].indexOf(v)) < 0 && fail("invalid_consent_mode", name);
    // true/all, false/none, or a comma-separated list of CAPTURE names (an array is joined with commas): each
    // name's place in CAPTURE is its bit.
    else if (name == "autocapture")
      o.capture = /^(true|all|)$/.test(v) ? 15 : /^(false|none)$/.test(v) ? 0 : v.split(/\s*,\s*/).map((part) => CAPTURE.indexOf(part)).reduce((flags, bit) => (bit < 0 ? fail("invalid_autocapture", name) : flags | (1 << bit)), 0);
    else if (name == "scrub") o.scrub = v.toLowerCase().split(/\s*,\s*/).filter((p) => p).join();
    else fail("unknown_option", name);
  }
  o.writeKey || fail("missing_write_key", "writeKey");
  /^https?:\/\//.test(o.collector) || fail("invalid_collector", "collector");
  return o;
}

/** Starts the module (`w`: js/load.js's `{ call, configure }`) with `options` and installs the DOM listeners;
 * throws only for invalid options. */
export function start(w, options) {
  const o = parseOptions(options);
  w.configure(o.collector, o.writeKey);
  // Operation 17 (sdk/src/api.rs) starts the module: the numbers packed into one, and the scrub patterns.
  w.call(17, o.consent + 2 * o.capture + 32 * o.batchSize + 16384 * o.idLifetimeDays, o.flushInterval, o.scrub);
  install(w, o.capture);
  const api = bind(w);
  // Warm the JS ↔ Wasm call path (op 16 reads the clock): V8 compiles its optimized call wrappers after about a
  // thousand calls, synchronously, on the main thread — here at load rather than in the page's first burst of
  // calls. A public track() with a blank name (never recorded) and properties runs the wrappers, JSON.stringify and
  // the dispatch up to its first decision; the two names alternate so that `str` is optimized for both of its paths
  // (otherwise the first real name deoptimizes it). 3,000 rounds rather than
  // 1,000: the later tiers (TurboFan for the JS, for the module's hot functions too) are then more often in place
  // when the page's first calls come (tests/browser/ab.mjs, 12 pages each, two runs: the first 1,000 track() calls
  // 7.1 → 4.7 and 5.0 → 2.6 µs each), for ~8 ms more to ready (51 → 59 ms, median) on this 2-core box.
  for (let i = 0; i < 3000; i++) w.call(16, 0, 0, str(""), ""), api.track(" ", {});
  return api;
}

/** consent(): 0 left as is, 1 denied, 2 granted. */
const choice = (c, name) => (c && typeof c[name] === "boolean" ? (c[name] ? 2 : 1) : 0);

/** The public functions, calling the module's `call` export (operation numbers in sdk/src/api.rs). */
export function bind(w) {
  // Every public method takes at most two arguments.
  const safe = (f) => (a, b) => {
    try {
      f(a, b);
    } catch (e) {
      // A tracker must never break the page.
    }
  };
  // page(name?, properties?) and identify(userId?, traits?): the first argument may be left out.
  const optional = (op, t) => safe((a, b) => (isObject(a) ? w.call(op, 0, 0, undefined, json(a)) : w.call(op, 0, 0, a == null ? a : t(a), json(b))));
  return {
    track: safe((event, properties) => w.call(0, 0, 0, str(event), json(properties))),
    page: optional(1, str),
    identify: optional(2, id),
    alias: safe((userId, previousId) => w.call(3, 0, 0, id(userId), text(previousId))),
    group: safe((groupId, traits) => w.call(4, 0, 0, id(groupId), json(traits))),
    reset: safe(() => w.call(5)),
    flush: safe(() => w.call(6)),
    consent: safe((c) => w.call(7, choice(c, "analytics") + 3 * choice(c, "marketing") + 9 * choice(c, "personalization"))),
  };
}
