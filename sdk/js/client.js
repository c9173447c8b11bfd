// The public API around the Wasm exports, shared by the script tag (script.js) and the npm entry (npm.js).
// Tracking calls never throw into the host page: arguments are coerced, properties are turned into JSON text with
// the browser's own JSON.stringify (fast, and a snapshot at call time), and every call is wrapped in try/catch.

import { install } from "./capture.js";
import { connect } from "./host.js";

export const METHODS = ["track", "page", "identify", "alias", "group", "reset", "flush", "consent"];

/** The option names `init` knows (camelCase; the script tag's data-* attributes map onto them). */
export const OPTIONS = ["writeKey", "collector", "consent", "flushInterval", "batchSize", "autocapture", "scrub", "idLifetimeDays"];

const json = (value) => {
  if (value == null) return undefined;
  try {
    return JSON.stringify(value);
  } catch (e) {
    return undefined; // cyclic, BigInt…: the event goes without properties
  }
};
const text = (value) => (value == null ? undefined : String(value));
const isObject = (value) => value !== null && typeof value === "object";

/** Options as the module reads them: `name=value` lines. */
export function encodeOptions(options) {
  return Object.keys(options)
    .filter((k) => options[k] != null)
    .map((k) => k + "=" + String(Array.isArray(options[k]) ? options[k].join(",") : options[k]).replace(/[\r\n]/g, " "))
    .join("\n");
}

/** Starts the module with `options` and installs the DOM listeners; throws only for invalid options. */
export function start(w, options) {
  connect(w);
  // The capture flags as digits, or `code:option` for invalid options.
  const answer = w.init(encodeOptions(options));
  const colon = answer.indexOf(":");
  if (colon >= 0) {
    const code = answer.slice(0, colon);
    const e = new Error("footprint: invalid option " + answer.slice(colon + 1) + " (" + code + ")");
    e.code = code;
    throw e;
  }
  install(w, +answer);
  return bind(w);
}

/** consent(): 0 left as is, 1 denied, 2 granted. */
const choice = (c, name) => (c && typeof c[name] === "boolean" ? (c[name] ? 2 : 1) : 0);

/** The public functions, calling the module's `call` export (operation numbers in sdk/src/api.rs). */
export function bind(w) {
  const safe = (f) =>
    function () {
      try {
        f.apply(null, arguments);
      } catch (e) {
        // A tracker must never break the page.
      }
    };
  return {
    track: safe((event, properties) => w.call(0, 0, 0, String(event), json(properties))),
    page: safe((name, properties) => (isObject(name) ? w.call(1, 0, 0, undefined, json(name)) : w.call(1, 0, 0, text(name), json(properties)))),
    identify: safe((userId, traits) => (isObject(userId) ? w.call(2, 0, 0, undefined, json(userId)) : w.call(2, 0, 0, text(userId), json(traits)))),
    alias: safe((userId, previousId) => w.call(3, 0, 0, String(userId), text(previousId))),
    group: safe((groupId, traits) => w.call(4, 0, 0, String(groupId), json(traits))),
    reset: safe(() => w.call(5, 0, 0)),
    flush: safe(() => w.call(6, 0, 0)),
    consent: safe((c) => w.call(7, choice(c, "analytics") + 3 * choice(c, "marketing") + 9 * choice(c, "personalization"), 0)),
  };
}
