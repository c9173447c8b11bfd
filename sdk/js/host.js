// The module's window on the browser: the few Web APIs `sdk/src/browser/` needs, as plain functions it imports
// (`#[wasm_bindgen(module = "/js/host.js")]`). Written in JS because each binding is a line here but costs a
// wrapper, a glue shim and closure machinery in the module (see sdk/ARCHITECTURE-sdk.md, "Size"). No decisions
// are made here: what to store, send, or retry is decided in Rust.
let w = null; // the module's exports, for the answers of fetch and the timer

export function connect(exports) {
  w = exports;
}

export const now = () => Date.now();

export function random(bytes) {
  if (self.crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.random() * 256) | 0;
}

// localStorage can be missing or throw (blocked storage, private modes, quota): then nothing is kept.
const storage = () => {
  try {
    return localStorage;
  } catch (e) {
    return null;
  }
};
export function load(key) {
  try {
    return storage()?.getItem(key) ?? undefined;
  } catch (e) {}
}
/** Writes `value`, or removes `key` when there is none. */
export function store(key, value) {
  try {
    if (value === undefined) storage()?.removeItem(key);
    else storage()?.setItem(key, value);
  } catch (e) {}
}
export function keys(prefix) {
  try {
    return Object.keys(storage() || {}).filter((k) => k.startsWith(prefix)).join("\n");
  } catch (e) {
    return "";
  }
}

/** url, referrer, title, locale, screen width, screen height, Global Privacy Control (1/0), visible (1/0) — one per line. */
export const page = () =>
  [
    location.href,
    document.referrer,
    document.title.replace(/\n/g, " "),
    navigator.language || "",
    screen.width | 0,
    screen.height | 0,
    navigator.globalPrivacyControl === true ? 1 : 0,
    document.hidden ? 0 : 1,
  ].join("\n");

// A text/plain string body is a CORS "simple request" (no preflight); no cookies. No keepalive: Chromium caps all
// keepalive bodies in flight at 64 KiB and refuses the rest silently; only the page-hide path uses sendBeacon.
export function send(url, body, key) {
  fetch(url, { method: "POST", body, credentials: "omit" }).then(
    (r) => w.call(11, r.status, 0, key, r.headers.get("Retry-After") ?? undefined),
    () => w.call(11, 0, 0, key),
  );
}

export function beacon(url, body) {
  try {
    return navigator.onLine !== false && navigator.sendBeacon(url, body);
  } catch (e) {
    return false;
  }
}

let timer = 0;
export function arm(ms) {
  clearTimeout(timer);
  timer = setTimeout(() => w.call(12, 0, 0), ms);
}
