//! Building responses. Every error body is JSON with a stable `code`; this is the one table from failures to
//! HTTP statuses.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub type Body = Full<Bytes>;

/// A request refused as a whole.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u32>,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u32) -> Self {
        Refusal { retry_after: Some(retry_after), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message) }
    }
}

/// One entry of an ingest response's `results`.
#[derive(Debug, Serialize)]
pub struct EventResult<'a> {
    #[serde(rename = "messageId")]
    pub message_id: &'a str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// The body of every `/v1/*` answer: per-event results, plus `code`/`message` when the request failed as a whole.
#[derive(Debug, Serialize)]
pub struct IngestBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    pub results: Vec<EventResult<'a>>,
}

impl IngestBody<'_> {
    /// The body as JSON: byte for byte what its `Serialize` gives (tested), written by hand. serde's writer cost
    /// ~1,000 instructions per event of a batch (every string escaped byte by byte); most of our strings need no
    /// escape, which one quick test shows.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 64 * self.results.len());
        out.push(b'{');
        if let Some(code) = self.code {
            field(&mut out, "code", code);
            out.push(b',');
        }
        if let Some(message) = self.message {
            field(&mut out, "message", message);
            out.push(b',');
        }
        out.extend_from_slice(b"\"results\":[");
        for (i, result) in self.results.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            field(&mut out, "messageId", result.message_id);
            out.push(b',');
            field(&mut out, "status", result.status);
            for (name, value) in [("code", result.code), ("reason", result.reason)] {
                if let Some(value) = value {
                    out.push(b',');
                    field(&mut out, name, value);
                }
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// `"name":` and `value` as a JSON string (`name` needs no escape).
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    string(out, value);
}

/// `value` as a JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, value: &str) {
    // Branch-free, so the compiler vectorises it.
    let needs_escape = value.bytes().fold(false, |found, b| found | matches!(b, 0..0x20 | b'"' | b'\\'));
    if needs_escape {
        serde_json::to_writer(&mut *out, value).expect("writing to a Vec");
    } else {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

/// An ingest answer (`/v1/*`).
pub fn ingest(status: StatusCode, body: &IngestBody<'_>) -> Response<Body> {
    with_json(status, body.to_json())
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    with_json(status, serde_json::to_vec(body).expect("response types serialise"))
}

fn with_json(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A whole-request refusal, with the results of the events it carried (each rejected with the same code).
pub fn refusal(refusal: &Refusal, results: Vec<EventResult<'_>>) -> Response<Body> {
    let body = IngestBody { code: Some(refusal.code), message: Some(&refusal.message), results };
    let mut response = ingest(refusal.status, &body);
    if let Some(seconds) = refusal.retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn not_found(path: &str) -> Response<Body> {
    refusal(&Refusal::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}")), vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_bodies_are_what_serde_writes() {
        let texts = ["", "m-1", "ünïcode ✓", "quote \" and \\ backslash", "tab\tnew\nline\u{1}\u{1f}", "</script>", "\u{7f}"];
        let mut bodies = vec![IngestBody { code: None, message: None, results: vec![] }];
        for (i, text) in texts.iter().enumerate() {
            let result = |status| EventResult { message_id: text, status, code: None, reason: None };
            let rejected = EventResult { message_id: texts[(i + 1) % texts.len()], status: "rejected", code: Some("invalid_type"), reason: Some(text) };
            bodies.push(IngestBody { code: None, message: None, results: vec![result("accepted"), rejected, result("duplicate")] });
            bodies.push(IngestBody { code: Some("queue_full"), message: Some(text), results: vec![result("rejected")] });
        }
        for body in &bodies {
            let ours = String::from_utf8(body.to_json()).unwrap();
            assert_eq!(ours, serde_json::to_string(body).unwrap());
            serde_json::from_str::<serde_json::Value>(&ours).unwrap();
        }
    }
}
