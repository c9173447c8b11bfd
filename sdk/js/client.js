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
const flag = (value) => (typeof value === "boolean" ? value : undefined);
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
  let flags;
  try {
    flags = w.init(encodeOptions(options));
  } catch (thrown) {
    const [code, option] = String(thrown).split(":");
    const e = new Error("footprint: invalid option " + option + " (" + code + ")");
    e.code = code;
    throw e;
  }
  install(w, flags);
  return bind(w);
}

/** The public functions, calling into the module's exports `w`. */
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
    track: safe((event, properties) => w.track(String(event), json(properties))),
    page: safe((name, properties) => (isObject(name) ? w.page(undefined, json(name)) : w.page(text(name), json(properties)))),
    identify: safe((userId, traits) => (isObject(userId) ? w.identify(undefined, json(userId)) : w.identify(text(userId), json(traits)))),
    alias: safe((userId, previousId) => w.alias(String(userId), text(previousId))),
    group: safe((groupId, traits) => w.group(String(groupId), json(traits))),
    reset: safe(() => w.reset()),
    flush: safe(() => w.flush()),
    consent: safe((c) => w.consent(flag(c && c.analytics), flag(c && c.marketing), flag(c && c.personalization))),
  };
}
