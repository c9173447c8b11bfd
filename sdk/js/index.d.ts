// Types of the npm package `footprint-sdk` (and of `window.footprint` from the script tag).
// Checked by `tsc --noEmit` against usage.ts (cargo xtask test).

/** JSON-serialisable data: properties and traits are sent as JSON. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined };
export type Properties = { [key: string]: JsonValue | undefined };

/** Consent categories; `necessary` is always granted. Omitted categories keep their current value. */
export interface ConsentCategories {
  analytics?: boolean;
  marketing?: boolean;
  personalization?: boolean;
}

export type Autocapture = boolean | "all" | "none" | ReadonlyArray<"pageviews" | "clicks" | "forms" | "engagement">;

export interface Options {
  /** The site's public write key. Required. */
  writeKey: string;
  /** The collector's base URL. Default: the page's origin (the script tag: the script's origin). */
  collector?: string;
  /** `required` (default): nothing identifying and nothing stored on the device until analytics consent;
   *  `implied`: everything granted until the visitor says otherwise. */
  consent?: "required" | "implied";
  /** Milliseconds an event may wait before its batch is sent. Default 2000. */
  flushInterval?: number;
  /** A batch is sent as soon as this many events wait. Default 20. */
  batchSize?: number;
  /** What is captured automatically. Default: everything. */
  autocapture?: Autocapture;
  /** Extra query-parameter names to scrub from URLs (matched as lower-case substrings). */
  scrub?: ReadonlyArray<string>;
  /** Days the anonymous ID lives on the device. Default 395. */
  idLifetimeDays?: number;
  /** Where to load the .wasm from. Default: next to the module (bundlers handle this). */
  wasmUrl?: string | URL;
}

/** The SDK's only error: invalid options given to `init`. */
export interface OptionError extends Error {
  code:
    | "missing_write_key"
    | "invalid_collector"
    | "invalid_consent_mode"
    | "invalid_number"
    | "invalid_autocapture"
    | "unknown_option";
}

/** Loads the module and starts tracking; throws an {@link OptionError} for invalid options. */
export function init(options: Options): Promise<void>;
export function track(event: string, properties?: Properties): void;
export function page(name?: string, properties?: Properties): void;
export function page(properties: Properties): void;
export function identify(userId?: string | number | null, traits?: Properties): void;
export function identify(traits: Properties): void;
export function alias(userId: string | number, previousId?: string | number): void;
export function group(groupId: string | number, traits?: Properties): void;
export function reset(): void;
export function flush(): void;
export function consent(categories: ConsentCategories): void;

/** `window.footprint`, defined by the stub snippet and the script tag. */
export interface Footprint {
  track: typeof track;
  page: typeof page;
  identify: typeof identify;
  alias: typeof alias;
  group: typeof group;
  reset: typeof reset;
  flush: typeof flush;
  consent: typeof consent;
}

declare global {
  interface Window {
    footprint: Footprint;
  }
}
