// Automatic capture: the DOM listeners. They only read the page and call the module's `call` export (operation
// numbers in sdk/src/api.rs); every decision (what is a page view, outbound link or download, what to scrub, what consent allows) is made in Rust.
// Listeners are passive and in the capture phase: they never delay or cancel the page's handlers or navigation.
const CLICKABLE = "a,button,[role=button],input[type=submit],input[type=button]";

// Ids and classes that look generated (CSS-in-JS hashes, framework ids) change between builds: left out.
const stable = (n) => /^[A-Za-z_-][\w-]{0,31}$/.test(n) && !/\d.*\d.*\d/.test(n) && !/^(css|sc)-/.test(n);

/** A text as a JSON string, what the module takes (sdk/src/api.rs); lone surrogates become U+FFFD, as they do in
 * UTF-8 (where the browser has `toWellFormed`; the collector refuses them in names). */
export const str = (s) => ((s = String(s)) === last ? lastJson : (lastJson = JSON.stringify((last = s).toWellFormed ? s.toWellFormed() : s)));
let last, lastJson; // the last text and its JSON string: a page tracks the same names again and again

/** A short text: ASCII whitespace runs collapsed, trimmed, at most 64 characters (never a field's value). */
const short = (s) => [...(s || "").slice(0, 1000).replace(/[\t\n\f\r ]+/g, " ").trim()].slice(0, 64).join("").trimEnd();

/** A stable selector: up to 4 steps up, stopping at an element with a stable id; at most 256 characters. */
export function selector(el) {
  const parts = [];
  for (let i = 0; el && i < 4; i++, el = el.parentElement) {
    const tag = el.tagName.toLowerCase();
    if (tag === "html" || tag === "body") break;
    if (stable(el.id)) {
      parts.unshift(tag + "#" + el.id);
      break;
    }
    let part = tag;
    (el.getAttribute("class") || "").split(/\s+/).filter(stable).slice(0, 2).forEach((c) => (part += "." + c));
    const same = [...(el.parentElement?.children || [])].filter((s) => s.tagName === el.tagName);
    if (same.length > 1) part += ":nth-of-type(" + (same.indexOf(el) + 1) + ")";
    parts.unshift(part);
  }
  return parts.join(" > ").slice(0, 256);
}

/** Installs the listeners `flags` asks for (1 page views, 2 clicks, 4 forms, 8 engagement); `w` is the module. */
export function install(w, flags) {
  const on = (target, name, f) =>
    target.addEventListener(
      name,
      (e) => {
        try {
          f(e);
        } catch (_) {}
      },
      { capture: true, passive: true },
    );
  if (flags & 2)
    on(document, "click", (e) => {
      const el = e.target?.closest?.(CLICKABLE);
      if (!el) return;
      const tag = el.tagName.toLowerCase();
      // Never an input's value: for inputs only their accessible label.
      const text = tag === "input" ? el.getAttribute("aria-label") || el.title : el.textContent;
      const link = tag === "a" && el.hasAttribute("href");
      // The texts as JSON strings (sdk/src/api.rs), but for the href, which the module scrubs; 1: a download
      // attribute, 2: a web link to another origin (the browser parsed the URL).
      const facts = link && el.hasAttribute("download") + 2 * (/^https?:$/.test(el.protocol) && el.origin != location.origin);
      w.call(9, facts, 0, str(selector(el)), str(short(text)), str(tag.slice(0, 16)), link ? el.href : undefined);
    });
  if (flags & 4)
    on(document, "submit", (e) => {
      const f = e.target;
      if (f instanceof HTMLFormElement) w.call(10, 0, 0, str(selector(f)), str(short(f.id)), f.action, str(f.method));
    });
  // Navigations are followed even without page-view capture: events must carry the current page.
  ["pushState", "replaceState"].forEach((name, trigger) => {
    const original = history[name];
    history[name] = function () {
      const result = original.apply(this, arguments);
      try {
        w.call(8, trigger);
      } catch (_) {}
      return result;
    };
  });
  on(window, "popstate", () => w.call(8, 2));
  on(window, "hashchange", () => w.call(8, 3));
  // 13: hidden or going away, 14: visible again, 6: flush.
  on(document, "visibilitychange", () => w.call(document.hidden ? 13 : 14));
  on(window, "pagehide", () => w.call(13));
  on(window, "online", () => w.call(6));
  if (flags & 8) on(window, "scroll", () => w.call(15, scrollY + innerHeight, document.documentElement.scrollHeight));
}
