//! What counts as personal data or a secret in a URL: one list for the SDK (which scrubs before sending) and the
//! collector (which scrubs again before storing, for events from any source).

/// Query parameter names dropped from URLs: a name is dropped when it contains one of these (case-insensitive).
pub const SCRUB_CONTAINS: &[&str] = &[
    "email", "mail", "token", "passw", "pwd", "secret", "auth", "session", "credential", "phone", "ssn", "card",
    "iban", "signature", "apikey", "api_key", "access_key", "private", "jwt",
];

/// Query parameter names dropped when they are exactly one of these (too short to match as parts of other names).
pub const SCRUB_EXACT: &[&str] = &[
    "sid", "key", "code", "tel", "otp", "sig", "pin", "name", "firstname", "first_name", "lastname", "last_name",
    "fullname", "address", "dob", "birthdate", "zip", "postcode", "state",
];

/// Advertising click identifiers: they single out one ad click, so they are kept only with marketing consent.
pub const CLICK_ID_PARAMS: &[&str] = &[
    "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "ttclid", "twclid", "li_fat_id", "yclid", "igshid",
    "mc_eid", "_hsenc", "_hsmi", "epik", "rdt_cid", "sccid", "irclickid",
];
