//! `/admin/v1/*`: routes for the site owner, behind `Authorization: Bearer <admin_token>`. Each area adds its
//! routes to [`handle`]'s match.

use super::reply::{self, Body, Refusal};
use super::{profiles, AppState};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub async fn handle(req: Request<Incoming>, state: &Arc<AppState>) -> Response<Body> {
    if let Err(refusal) = authorize(req.headers(), state) {
        return reply::refusal(&refusal, vec![]);
    }
    let path = req.uri().path().trim_start_matches("/admin/v1").to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/sites") => sites(state),
        (&Method::GET, "/profiles/lookup") => profiles::lookup(req, state).await,
        (&Method::GET, p) if p.starts_with("/profiles/") => {
            let rest = p["/profiles/".len()..].to_owned();
            profiles::by_id(req, state, &rest).await
        }
        (&Method::POST, p) if p.starts_with("/merges/") && p.ends_with("/undo") => profiles::undo_merge(state, &p["/merges/".len()..p.len() - "/undo".len()]).await,
        (&Method::GET, "/export") => profiles::export(req, state).await,
        (&Method::POST, "/erase") => profiles::erase(req, state).await,
        (&Method::GET, p) if p.starts_with("/stats/") => super::stats::stats(p, req.uri().query(), state).await,
        (&Method::GET, "/quarantine") => super::stats::quarantine(req.uri().query(), state).await,
        (&Method::POST, "/sync") => super::stats::sync(state).await,
        (&Method::GET, "/consent-ledger") => super::stats::consent_ledger(req.uri().query(), state).await,
        _ => reply::not_found(req.uri().path()),
    }
}

/// The configured sites (write keys are public: they ship in page HTML).
fn sites(state: &AppState) -> Response<Body> {
    let sites: Vec<serde_json::Value> = state
        .config
        .sites
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "write_key": s.write_key,
                "origins": s.origins,
                "consent_mode": match s.consent_mode { crate::config::ConsentMode::Required => "required", crate::config::ConsentMode::Implied => "implied" },
                "retention_days": s.retention_days,
            })
        })
        .collect();
    reply::json(StatusCode::OK, &serde_json::json!({ "sites": sites }))
}

/// Admits a request whose bearer token equals the admin token (compared in constant time).
pub fn authorize(headers: &HeaderMap, state: &AppState) -> Result<(), Refusal> {
    let expected = state.config.admin_token.as_ref().map(|t| t.expose()).unwrap_or("");
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        None => Err(Refusal::new(StatusCode::UNAUTHORIZED, "missing_admin_token", "send Authorization: Bearer <admin token>")),
        Some(token) if !expected.is_empty() && constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal::new(StatusCode::UNAUTHORIZED, "invalid_admin_token", "the admin token is not valid")),
    }
}

/// Equality whose time depends only on the lengths, not on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
