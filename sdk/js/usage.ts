// Compile-only check of index.d.ts (`tsc -p sdk/js`): what users write must type-check, and each line marked
// as an expected error must fail to.
import { init, track, page, identify, alias, group, reset, flush, consent, type OptionError } from "./index.js";

async function main(): Promise<void> {
  await init({ writeKey: "wk_demo" });
  await init({ writeKey: "wk_demo", collector: "https://collect.example", consent: "implied", flushInterval: 500, batchSize: 10,
    autocapture: ["pageviews", "clicks"], scrub: ["orderid"], idLifetimeDays: 30, wasmUrl: new URL("https://cdn.example/f.wasm") });
  track("Signed Up", { plan: "pro", seats: 3, tags: ["a", "b"], nested: { ok: true, none: null } });
  track("Clicked");
  page();
  page("Pricing");
  page("Pricing", { variant: "b" });
  page({ variant: "b" });
  identify("user-1", { email: "a@b.example" });
  identify(42);
  identify({ plan: "pro" });
  alias("user-1");
  alias("user-1", "anon-1");
  group("acme", { seats: 10 });
  reset();
  flush();
  consent({ analytics: true });
  consent({ analytics: false, marketing: false, personalization: true });
  window.footprint.track("From the script tag");
  window.footprint.consent({ marketing: false });
  try {
    await init({ writeKey: "" });
  } catch (e) {
    const code: OptionError["code"] = (e as OptionError).code;
    void code;
  }
  // @ts-expect-error writeKey is required
  await init({});
  // @ts-expect-error consent modes are "required" | "implied"
  await init({ writeKey: "wk", consent: "maybe" });
  // @ts-expect-error the event name is required
  track();
  // @ts-expect-error categories are booleans
  consent({ analytics: "yes" });
  // @ts-expect-error properties must be JSON-serialisable
  track("x", { f: () => 1 });
}
void main;
