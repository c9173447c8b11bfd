// The module's window on the browser, and the whole JS side of its boundary: the few Web APIs `sdk/src/browser/`
// imports (as plain Wasm functions, module "h"), `call`, which passes texts in, and the request bodies, which a
// worker writes and sends from the batches the module hands over (each event a line of fields, sdk/src/queue.rs),
// off the page's main thread. A text crosses as UTF-8 in the
// module's memory: out of the module as a pointer and a byte length, into it through one buffer the module lends
// (`texts`). Written by hand because each wasm-bindgen binding costs a shim here and marshalling code in the
// module (see sdk/ARCHITECTURE-sdk.md, "Size"). No decisions are made here: what to store, send, or retry is
// decided in Rust.
import { version } from "../../package.json";

let w = null; // the module's exports
let out = null; // the bytes of the text a host function answered, until the module takes them
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let mem = new Uint8Array(0); // a view of the module's memory; empty once the memory grew (its old buffer is detached)
const view = () => (mem.byteLength ? mem : (mem = new Uint8Array(w.memory.buffer)));
const bytes = (at, n) => view().subarray(at, at + n);
const text = (at, n) => decoder.decode(bytes(at, n));
/** Answers a text: its byte length now (-1 for none), the bytes when the module calls `take`. */
const give = (s) => (s == null ? -1 : (out = encoder.encode(s)).length);

let timer = 0;
let clock = 0; // this task's time (see `now`)
let endpoint, key; // `{collector}/v1/batch` and the write key as a JSON string

export function connect(exports) {
  w = exports;
}

/** Where `x` and `b` send, and the write key of their bodies. */
export function configure(collector, writeKey) {
  endpoint = collector + "/v1/batch";
  key = JSON.stringify(writeKey);
}

/** The request body of a request's batches (`lines`: each batch a context line `c{…}`, the same in all, then one
 * line per event; `key`, the write key as a JSON string): the events' JSON in the Segment batch envelope, with the
 * context and `sentAt` now. A line that is JSON already (stored by an earlier version) goes as it is; one that does
 * not read as a line (the site's own code changed the device copy) is left out. Self-contained: the send worker
 * runs its source too. */
function body(lines, key) {
  // The kinds of the lines (sdk/src/queue.rs): the event's type and the keys of its field and of its payload.
  const kinds = [["track", "event", "properties"], ["page", "name", "properties"], ["identify", , "traits"], ["alias", "previousId"], ["group", "groupId", "traits"]];
  const events = [];
  let context = "", batch, place;
  for (const line of lines.split("\n"))
    try {
      // A context line also names its batch: an event without a messageId of its own gets `{batch}-{its place}`.
      if (line[0] == "c") [context, batch] = line.slice(1).split("\t"), (context = ',"context":' + context), (place = 0);
      else if (line[0] == "{") events.push(line.replace(/,$/, ""));
      else {
        // A line without its kind or time throws (the time as an Invalid Date): it is left out.
        const [kind, f, p, id, ms, ids = ""] = line.split("\t"), [type, fk, pk] = kinds[kind];
        events.push('{"type":"' + type + (f ? '","' + fk + '":' + f : '"') + (p ? ',"' + pk + '":' + p : "") + ',"messageId":"' + (id || batch + "-" + place++) + '","timestamp":"' + new Date(ms && +ms).toISOString() + '"' + ids + "}");
      }
    } catch (e) {}
  return '{"batch":[' + events + "]" + context + ',"sentAt":"' + new Date().toISOString() + '","writeKey":' + key + "}";
}

/** Sends the request `data` (the endpoint, the batches' lines, the write key as JSON, the batch's number) as a
 * `message` event carries it; `post` takes the answer, [status (0: no answer), batch, Retry-After]. Self-contained like `body`: it
 * runs in the send worker, off the page's main thread (where a fetch() costs milliseconds, more for larger bodies),
 * and in the page where no worker can run. */
function sender(body, post) {
  return ({ data: [url, lines, key, batch] }) =>
    fetch(url, { method: "POST", body: body(lines, key), credentials: "omit" }).then(
      (r) => post([r.status, batch, r.headers.get("Retry-After")]),
      () => post([0, batch]),
    );
}
// The send worker: undefined until the first request of more than 16 KiB, 0 where the page cannot run one (a
// Content-Security-Policy without blob: workers, say). Until then, and without one, the page sends itself: starting
// a worker costs the page's main thread about as much as a small request does (~2 ms), and its thread ~10 ms of CPU,
// which pays off for bursts (each large request then costs the page ~0.1 ms instead of 2-5 ms), not for a page's
// few events. `sending`: the batch it was given last.
let worker, sending;
const answer = (d) => call(11, ...d);

let end = 0; // where the next text of `call` goes
const len = (t) => (t == null ? 0 : t.length);
/** Writes `t` at `end` (ASCII byte by byte, which is fastest for short texts, the rest by encodeInto); returns its
 * byte length, -1 for none. The loop stores at `start + i` and sets `end` once: ~40 % faster than `v[end++]`. */
function put(t) {
  if (t == null) return -1;
  const v = view();
  const start = end;
  let i = 0;
  for (; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c > 127) break;
    v[start + i] = c;
  }
  end = start + i;
  if (i < t.length) end += encoder.encodeInto(t.slice(i), v.subarray(end)).written;
  return end - start;
}

/** Calls the module (operation numbers in sdk/src/api.rs); `a`–`d` are texts, or undefined or null for none;
 * numbers left out arrive as NaN (read as 0). */
export function call(op, n, m, a, b, c, d) {
  end = w.texts(3 * (len(a) + len(b) + len(c) + len(d))) >>> 0; // a UTF-16 unit is at most 3 bytes of UTF-8
  w.call(op, n, m, put(a), put(b), put(c), put(d));
}

/** The module's imports (module "h"), named by one letter each (`link_name` in sdk/src/browser/mod.rs): take, now,
 * random, load, store, keys, page, facts, context, send (x), beacon, arm. One object rather than an
 * `import *` namespace: smaller once bundled. */
export const imports = {
  /* take */ t: (at) => bytes(at, out.length).set(out),

  /** Epoch ms, read once per task: the calls of one burst share it (the clock costs a tenth of a microsecond and
   * more a read here, a tenth of a track() call), and a microtask forgets it when the task ends. */
  /* now */ n: () => clock || (queueMicrotask(() => (clock = 0)), (clock = Date.now())),

  /* random */ r: (at, n) => crypto.getRandomValues(bytes(at, n)),
  /** A UUIDv4, written at `at` (36 bytes): the page's key base, the anonymous and session IDs, a few a page. Each
   * 0, 1 and 8 of the template becomes a random hex digit (the 8 keeps the variant bits; the 4 is the version). */
  /* uuid */ u: (at) => encoder.encodeInto("10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) => (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)), bytes(at, 36)),

  // localStorage can be missing (null) or throw (blocked storage, private modes, quota): then nothing is kept.
  /** The value, or with `json` the value as a JSON string: one that starts with a quote as JSON.parse reads it and
   * JSON.stringify writes it again, any other (stored raw by an earlier version) as JSON.stringify writes it. */
  /* load */ l(at, n, json) {
    try {
      const v = localStorage.getItem(text(at, n));
      return give(json && v != null ? JSON.stringify(v[0] == '"' ? JSON.parse(v) : v) : v);
    } catch (e) {
      return -1;
    }
  },
  /** Writes the value, or removes the key when there is none (length -1). */
  /* store */ s(at, n, vat, vn) {
    try {
      if (vn < 0) localStorage.removeItem(text(at, n));
      else localStorage.setItem(text(at, n), text(vat, vn));
    } catch (e) {}
  },
  /** Every key, one per line (the module picks its own). */
  /* keys */ k() {
    try {
      return give(Object.keys(localStorage).join("\n"));
    } catch (e) {
      return -1;
    }
  },

  /** url and referrer, one per line. */
  /* page */ p: () => give(location.href + "\n" + document.referrer),
  /** Global Privacy Control (1/0) + 2 · visible (1/0). */
  /* facts */ f: () => (navigator.globalPrivacyControl === true) + 2 * !document.hidden,

  /** The events' `context` (sdk/src/tracker.rs, `Device::context`) from what the module decided — the scrubbed URL
   * and referrer, the consent state `n` (its bits: 1 analytics, 2 marketing, 4 personalization, 8 implied mode,
   * 16 · source, 64 GPC), the session — and what only the page knows: title, locale, screen. */
  /* context */ c(uat, un, rat, rn, n, sat, sn) {
    const url = text(uat, un);
    // The query of the URL as written (no URL parsing: nothing is normalised or decoded). No `path` and `search`:
    // the collector reads the path from the URL.
    const query = url.split("#")[0].replace(/^[^?]*/, "");
    let campaign;
    ["source", "medium", "name", "term", "content"].forEach((f) => {
      const v = query.match("[?&]utm_" + (f == "name" ? "campaign" : f) + "=([^&]+)");
      if (v) (campaign ||= {})[f] = v[1].slice(0, 256);
    });
    return give(
      JSON.stringify({
        library: { name: "footprint-sdk", version },
        page: { referrer: text(rat, rn), title: document.title.slice(0, 512), url },
        campaign,
        locale: navigator.language.slice(0, 35),
        screen: { width: screen.width, height: screen.height },
        consent: {
          categoryPreferences: { necessary: true, analytics: !!(n & 1), marketing: !!(n & 2), personalization: !!(n & 4) },
          mode: n & 8 ? "implied" : "required",
          source: ["default", "stored", "explicit"][(n >> 4) & 3],
          gpc: !!(n & 64),
        },
        sessionId: sn < 0 ? undefined : text(sat, sn),
        cookieless: n & 1 ? undefined : true,
      }),
    );
  },

  // A text/plain string body is a CORS "simple request" (no preflight); no cookies. No keepalive: Chromium caps all
  // keepalive bodies in flight at 64 KiB and refuses the rest silently; only the page-hide path uses sendBeacon.
  /* send */ x(at, n, batch) {
    if (worker === undefined && n > 16384)
      try {
        worker = new Worker(URL.createObjectURL(new Blob(["onmessage=(" + sender + ")(" + body + ",postMessage)"])));
        worker.onmessage = (e) => answer(e.data);
        // It could not start: from now on the page sends, the request it was given first (as failed, so retried).
        worker.onerror = () => {
          worker = 0;
          answer([0, sending]);
        };
      } catch (e) {
        worker = 0;
      }
    const data = [endpoint, text(at, n), key, (sending = batch)];
    worker ? worker.postMessage(data) : sender(body, answer)({ data });
  },

  /* beacon */ b(at, n) {
    try {
      return navigator.onLine !== false && navigator.sendBeacon(endpoint, body(text(at, n), key));
    } catch (e) {
      return false;
    }
  },

  /* arm */ a(ms) {
    clearTimeout(timer);
    timer = setTimeout(() => call(12), ms);
  },
};
