//! Request extractors that turn every malformed input into a [`Problem`].

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use ledger_store::IdempotencyKey;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::app::AppState;
use super::problem::Problem;
use crate::auth::{self, AuthError, Authenticated, Principal};

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The caller: the [`Authenticated`] principal an entry point put in the
/// request's extensions (API Gateway's authorizer verified the token), or
/// else the bearer token, verified here. The tenant comes only from these.
///
/// An extension cannot come from the network, so a client cannot supply
/// one; see [`Authenticated`].
pub struct Auth(pub Principal);

impl<S: Send + Sync> FromRequestParts<AppState<S>> for Auth
where
    S: 'static,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(Authenticated(principal)) = parts.extensions.get::<Authenticated>() {
            return Ok(Auth(*principal));
        }
        let value = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("an Authorization: Bearer token is required"))?
            .to_str()
            .map_err(|_| Problem::unauthorized("the Authorization header is not text"))?;
        let token = auth::bearer(value).map_err(|e| Problem::unauthorized(e.to_string()))?;
        let principal = state.verifier.verify(token).await.map_err(auth_problem)?;
        Ok(Auth(principal))
    }
}

/// `401` for a token that proves nothing; `503` when the issuer's keys
/// could not be fetched, so the token was neither accepted nor refused.
fn auth_problem(error: AuthError) -> Problem {
    match error {
        AuthError::KeysUnavailable => {
            tracing::warn!(error = %error, "a token could not be verified");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the token could not be verified now; retry",
            )
        }
        error => Problem::unauthorized(error.to_string()),
    }
}

/// The `Idempotency-Key` header every write must carry.
pub struct Key(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Two keys cannot both name the request; taking the first silently
        // would replay or refuse it under a key the client may not mean.
        if parts.headers.get_all(IDEMPOTENCY_KEY_HEADER).iter().count() > 1 {
            return Err(Problem::validation(
                "one Idempotency-Key header per request; this one has several",
            ));
        }
        let value = parts.headers.get(IDEMPOTENCY_KEY_HEADER).ok_or_else(|| {
            Problem::validation("the Idempotency-Key header is required on writes")
        })?;
        let text = value
            .to_str()
            .map_err(|_| Problem::validation("the Idempotency-Key header is not text"))?;
        IdempotencyKey::parse(text)
            .map(Key)
            .map_err(|e| Problem::validation(e.to_string()))
    }
}

/// A JSON body, parsed strictly (unknown fields are refused by the types),
/// with the digest that tells a replay from a different request.
pub struct Body<T> {
    pub value: T,
    /// SHA-256 over the request path and the body re-encoded canonically,
    /// so whitespace or key order in the client's bytes do not matter.
    pub request_hash: [u8; 32],
}

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Serialize,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_owned();
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than this route accepts",
                ),
                status => Problem::new(status, "validation_failed", e.body_text()),
            })?;
        let value: T = parse_body(&bytes)?;
        let canonical = serde_json::to_vec(&value).expect("a parsed body re-encodes");
        Ok(Body {
            request_hash: request_hash(&path, &canonical),
            value,
        })
    }
}

/// Whether a `Content-Type` is exactly `application/json` (RFC 9110: type
/// and subtype compared case-insensitively), with parameters allowed and a
/// `charset`, if given, of `utf-8`. Not a prefix: `application/jsonfoo`
/// and `application/json-patch+json` are other media types.
pub fn is_json_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|parameter| {
        let Some((name, value)) = parameter.split_once('=') else {
            return false;
        };
        let name = name.trim();
        let value = value.trim().trim_matches('"');
        !name.is_empty()
            && (!name.eq_ignore_ascii_case("charset") || value.eq_ignore_ascii_case("utf-8"))
    })
}

/// Parses a JSON body; a failure's detail names the field it failed at
/// (`lines[0].unit_price: "1e2" is not an amount: …`).
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match path.as_str() {
            "." => Problem::validation(format!("the body does not parse: {inner}")),
            field => Problem::validation(format!("the body does not parse: {field}: {inner}")),
        }
    })?;
    json.end()
        .map_err(|e| Problem::validation(format!("the body does not parse: {e}")))?;
    Ok(value)
}

pub fn request_hash(path: &str, canonical_body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((path.len() as u64).to_le_bytes());
    h.update(path.as_bytes());
    h.update(canonical_body);
    h.finalize().into()
}

/// Query parameters, parsed strictly.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_strict(query).map(Params)
    }
}

fn serde_urlencoded_strict<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| Problem::validation("bad query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| Problem::validation(format!("bad query parameters: {}", e.body_text())))
}

/// A path parameter parsed with the type's own validation.
pub fn path_id<T, E: std::fmt::Display>(
    text: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, Problem> {
    parse(text).map_err(|e| Problem::validation(format!("bad {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::is_json_media_type;

    /// Regression: `application/jsonfoo` and `application/json-patch+json`
    /// were taken as JSON by prefix, and `Application/JSON` was refused.
    #[test]
    fn json_is_one_media_type_compared_without_case() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            " application/json ",
        ] {
            assert!(is_json_media_type(json), "{json:?}");
        }
        for other in [
            "application/jsonfoo",
            "application/json-patch+json",
            "application/json+x",
            "application/problem+json",
            "text/json",
            "application/json; charset=latin1",
            "application/json; charset",
            "application/json;",
            "text/plain",
            "",
        ] {
            assert!(!is_json_media_type(other), "{other:?}");
        }
    }
}
