//! Cognito user pools: tokens verified against the pool's published keys
//! ([`CognitoVerifier`]), and the claims API Gateway's Cognito authorizer
//! already verified ([`principal_from_authorizer`]).
//!
//! # What a token must be
//!
//! What aws-jwt-verify, the reference verifier, asks: RS256 and nothing
//! else (`none`, HMAC and every other algorithm are refused before a key is
//! looked up, so a token signed with HS256 under the public key's bytes
//! never reaches a key); signed by a key of the pool's JWKS, found by the
//! header's `kid` (keys a header carries itself, `jwk` or `jku`, are never
//! used); `iss` exactly the configured issuer; `token_use` the configured
//! one; the app client's id in `aud` (ID tokens) or in `client_id` (access
//! tokens); `exp` and `nbf` within [`TOKEN_LEEWAY_SECONDS`], and `iat` not
//! in the future.
//!
//! # Claims to principal
//!
//! `sub` is the user, `custom:tenant_id` the tenant, `custom:vendor_id` and
//! `custom:employee_id` the vendor and employee, and `cognito:groups` the
//! roles: a group named exactly `Admin`, `Vendor`, `Cashier`, `Employee` or
//! `Service` grants that role. Other groups are ignored rather than
//! refused: a pool may serve other applications, whose groups mean nothing
//! here, and ignoring one grants nothing. Then the rules every token obeys
//! ([`Principal::try_new`]); a token whose groups name no role is refused.
//!
//! The deployment verifies **ID tokens** by default, because Cognito puts a
//! user's custom attributes in the ID token only. An access token carries
//! `custom:*` claims only when the pool's pre-token-generation trigger
//! (event version V2, the one that may customise access tokens) adds them;
//! without it every access token is refused for want of a tenant.
//!
//! # Keys
//!
//! The JWKS (`{issuer}/.well-known/jwks.json`) is fetched on first use and
//! kept [`JWKS_TTL`]. A token naming a `kid` the set lacks has it fetched
//! again, but at most once per [`JWKS_REFETCH_INTERVAL_MIN`] whoever asks,
//! so a flood of made-up `kid`s costs the issuer one request per interval;
//! requests that need a fetch while one runs wait for its outcome. Only RSA
//! signing keys are kept (`kty` RSA, `use` sig or absent, `alg` RS256 or
//! absent).
//!
//! A failed fetch (unreachable, not `200`, too large, no usable key) is
//! logged and keeps the keys already held: a set past its TTL stays in use
//! up to [`JWKS_STALE_MAX`] longer while refreshes fail. A token that
//! cannot be checked for want of keys is [`AuthError::KeysUnavailable`],
//! which the API answers `503`: a retry may succeed, where a `401` would
//! tell the client to throw away a token that may be good.
//!
//! Keys are fetched over HTTPS (rustls, the system's root certificates);
//! plain HTTP is accepted only from an issuer on a loopback address, which
//! is where a local emulator runs.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use serde::Deserialize;
use serde_json::Value;

use super::{
    AuthError, Principal, RoleSet, TOKEN_LEEWAY_SECONDS, TOKEN_LEN_MAX, Verifier, VerifyFuture,
    jwt_error, now_seconds,
};

/// Where a pool publishes its keys, after its issuer URL.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// How long a fetched key set is used before it is fetched again.
pub const JWKS_TTL: Duration = Duration::from_hours(1);
/// How much longer than [`JWKS_TTL`] a key set stays in use while every
/// refresh fails: a day of the issuer's key endpoint being unreachable
/// before every token is refused.
pub const JWKS_STALE_MAX: Duration = Duration::from_hours(24);
/// Fewest time between two fetches of a key set, whatever tokens arrive:
/// aws-jwt-verify's figure.
pub const JWKS_REFETCH_INTERVAL_MIN: Duration = Duration::from_secs(10);
/// Longest a key fetch may take, connection included.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set read, in bytes. A pool publishes two keys, about a
/// kilobyte.
pub const JWKS_BYTES_MAX: usize = 64 * 1024;
/// Most keys kept from one key set.
pub const JWKS_KEYS_MAX: usize = 16;

/// Cognito groups and the roles they grant; any other group grants none.
const GROUP_ROLES: [(&str, Role); 5] = [
    ("Admin", Role::Admin),
    ("Vendor", Role::Vendor),
    ("Cashier", Role::Cashier),
    ("Employee", Role::Employee),
    ("Service", Role::Service),
];
const CLAIM_SUB: &str = "sub";
const CLAIM_TENANT: &str = "custom:tenant_id";
const CLAIM_VENDOR: &str = "custom:vendor_id";
const CLAIM_EMPLOYEE: &str = "custom:employee_id";
const CLAIM_GROUPS: &str = "cognito:groups";
const SHAPE: AuthError = AuthError::InvalidClaims("claims do not have the expected shape");

/// Which of a pool's tokens the API accepts: its `token_use` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenUse {
    /// ID tokens, which carry the user's custom attributes: the default.
    #[default]
    Id,
    /// Access tokens, which carry custom attributes only when a
    /// pre-token-generation trigger (V2) adds them.
    Access,
}

impl TokenUse {
    /// The `token_use` claim's value.
    pub const fn claim(self) -> &'static str {
        match self {
            TokenUse::Id => "id",
            TokenUse::Access => "access",
        }
    }
}

/// Which pool and app client tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoConfig {
    /// The pool's issuer, exactly as its tokens' `iss`:
    /// `https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf`, or
    /// `http://127.0.0.1:PORT/POOL_ID` for a local emulator.
    pub issuer: String,
    /// The app client's id.
    pub client_id: String,
    pub token_use: TokenUse,
}

/// How the key set is kept: [`JwksPolicy::default`] is the named limits;
/// tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    pub ttl: Duration,
    pub stale_max: Duration,
    pub refetch_interval_min: Duration,
    pub fetch_timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        JwksPolicy {
            ttl: JWKS_TTL,
            stale_max: JWKS_STALE_MAX,
            refetch_interval_min: JWKS_REFETCH_INTERVAL_MIN,
            fetch_timeout: JWKS_FETCH_TIMEOUT,
        }
    }
}

/// Why a [`CognitoVerifier`] cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum CognitoConfigError {
    #[error("the issuer {0:?} is not a URL")]
    IssuerNotUrl(String),
    #[error("the issuer {0:?} is not https (plain http is for a loopback address only)")]
    IssuerNotHttps(String),
    #[error(
        "the issuer {0:?} must be a pool's URL: a path, no trailing slash, query, fragment or credentials"
    )]
    IssuerShape(String),
    #[error("the app client id is empty")]
    NoClientId,
    #[error("the HTTP client for the pool's keys could not be built")]
    Client(#[source] reqwest::Error),
}

/// Verifies a Cognito user pool's tokens (see the module doc for every
/// check), fetching the pool's keys as it needs them.
pub struct CognitoVerifier {
    config: CognitoConfig,
    policy: JwksPolicy,
    jwks_url: String,
    validation: Validation,
    http: reqwest::Client,
    /// The last key set fetched. Replaced whole, never edited, so a reader
    /// holds the lock only to clone the `Arc`.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When a fetch was last tried. Held across the fetch, so one runs at a
    /// time and the requests behind it see its outcome.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Instant,
}

impl CognitoVerifier {
    /// A verifier keeping keys by the named limits.
    ///
    /// # Errors
    /// [`CognitoConfigError`] for an issuer that is not a pool's https URL
    /// (or http on loopback), an empty client id, or no HTTP client.
    pub fn new(config: CognitoConfig) -> Result<CognitoVerifier, CognitoConfigError> {
        Self::with_policy(config, JwksPolicy::default())
    }

    /// A verifier keeping keys by `policy`.
    ///
    /// # Errors
    /// As [`CognitoVerifier::new`].
    pub fn with_policy(
        config: CognitoConfig,
        policy: JwksPolicy,
    ) -> Result<CognitoVerifier, CognitoConfigError> {
        let loopback = check_issuer(&config.issuer)?;
        if config.client_id.is_empty() {
            return Err(CognitoConfigError::NoClientId);
        }
        let mut http = reqwest::Client::builder()
            .timeout(policy.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if loopback {
            // A proxy from the environment has no business with loopback.
            http = http.no_proxy();
        }
        let http = http.build().map_err(CognitoConfigError::Client)?;
        Ok(CognitoVerifier {
            jwks_url: format!("{}{JWKS_PATH}", config.issuer),
            validation: validation(&config),
            config,
            policy,
            http,
            keys: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &CognitoConfig {
        &self.config
    }

    /// Where the pool's keys are fetched from.
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    async fn check(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        if bearer_token.is_empty() {
            return Err(AuthError::Missing);
        }
        if bearer_token.len() > TOKEN_LEN_MAX {
            return Err(AuthError::Malformed);
        }
        // `none` does not parse as a header at all.
        let header = jsonwebtoken::decode_header(bearer_token).map_err(|_| AuthError::Malformed)?;
        // Before any key is looked up, so that no other algorithm reaches a
        // key or costs a fetch.
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::BadSignature);
        }
        let kid = header.kid.ok_or(AuthError::Malformed)?;
        let key = self.key(&kid).await?;
        let claims = jsonwebtoken::decode::<CognitoClaims>(bearer_token, &key, &self.validation)
            .map_err(|e| jwt_error(e.kind()))?
            .claims;
        // The library compared `iss` too, but accepts an array holding it.
        if claims.iss != self.config.issuer {
            return Err(AuthError::InvalidClaims("wrong issuer"));
        }
        if claims.token_use != self.config.token_use.claim() {
            return Err(AuthError::InvalidClaims("wrong token use"));
        }
        let client = self.config.client_id.as_str();
        match self.config.token_use {
            TokenUse::Id if !audience_names(claims.aud.as_ref(), client) => {
                return Err(AuthError::InvalidClaims("wrong audience"));
            }
            TokenUse::Access if claims.client_id.as_deref() != Some(client) => {
                return Err(AuthError::InvalidClaims("wrong client"));
            }
            _ => {}
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now_seconds().saturating_add(TOKEN_LEEWAY_SECONDS))
        {
            return Err(AuthError::InvalidClaims("issued in the future"));
        }
        principal_of(&Identity {
            sub: Some(&claims.sub),
            tenant: claims.tenant_id.as_deref(),
            vendor: claims.vendor_id.as_deref(),
            employee: claims.employee_id.as_deref(),
            roles: roles_of_groups(claims.groups.iter().map(String::as_str)),
        })
    }

    /// The key named `kid`: from the held set while it is fresh, else after
    /// a fetch if one is due, else from whatever set is held.
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // The fetch this request waited behind may have brought the key.
        if let Some(key) = self.fresh_key(kid) {
            return Ok(key);
        }
        let due = last_fetch.is_none_or(|at| at.elapsed() >= self.policy.refetch_interval_min);
        if due {
            *last_fetch = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    *self.keys.write().unwrap_or_else(PoisonError::into_inner) =
                        Some(Arc::new(set));
                }
                Err(e) => tracing::warn!(
                    jwks = %self.jwks_url,
                    error = %e,
                    cause = ?std::error::Error::source(&e),
                    "fetching the token issuer's keys failed; keeping the keys held"
                ),
            }
        }
        drop(last_fetch);
        self.usable_key(kid)
    }

    fn held(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fresh_key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let set = self.held()?;
        if set.fetched_at.elapsed() >= self.policy.ttl {
            return None;
        }
        set.keys.get(kid).cloned()
    }

    fn usable_key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        let usable_for = self.policy.ttl.saturating_add(self.policy.stale_max);
        match self.held() {
            Some(set) if set.fetched_at.elapsed() < usable_for => {
                set.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            _ => Err(AuthError::KeysUnavailable),
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let mut response = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(JwksError::Http)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > JWKS_BYTES_MAX as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(JwksError::Http)? {
            if body.len() + chunk.len() > JWKS_BYTES_MAX {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(KeySet {
            keys: signing_keys(&body)?,
            fetched_at: Instant::now(),
        })
    }
}

impl Verifier for CognitoVerifier {
    fn verify<'a>(&'a self, bearer_token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.check(bearer_token))
    }
}

impl fmt::Debug for CognitoVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CognitoVerifier")
            .field("config", &self.config)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why a key set could not be fetched: for the log only.
#[derive(Debug, thiserror::Error)]
enum JwksError {
    #[error("the request failed")]
    Http(#[source] reqwest::Error),
    #[error("the issuer answered HTTP {0}")]
    Status(u16),
    #[error("the key set is larger than {JWKS_BYTES_MAX} bytes")]
    TooLarge,
    #[error("the answer is not a JSON Web Key Set")]
    NotJwks,
    #[error("the key set holds no RSA signing key with a key id")]
    NoSigningKey,
}

/// The claims of a Cognito token this API reads; the library checks `exp`
/// and `nbf`, and others are ignored.
#[derive(Deserialize)]
struct CognitoClaims {
    sub: String,
    iss: String,
    token_use: String,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(rename = "custom:tenant_id", default)]
    tenant_id: Option<String>,
    #[serde(rename = "custom:vendor_id", default)]
    vendor_id: Option<String>,
    #[serde(rename = "custom:employee_id", default)]
    employee_id: Option<String>,
    #[serde(rename = "cognito:groups", default)]
    groups: Vec<String>,
}

fn validation(config: &CognitoConfig) -> Validation {
    // Only RS256 is listed: the library refuses any other header algorithm
    // and any key not of the RSA family.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = TOKEN_LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&config.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    // The client is checked after, against `aud` or `client_id` by the
    // token's use, so that an access token offered where ID tokens are
    // expected is refused for its `token_use`, the clearer reason.
    validation.validate_aud = false;
    validation
}

/// Whether an ID token's `aud` names `client`: the string itself, or an
/// array holding it (RFC 7519 allows either; Cognito writes the string).
fn audience_names(aud: Option<&Value>, client: &str) -> bool {
    match aud {
        Some(Value::String(aud)) => aud == client,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(client)),
        _ => false,
    }
}

/// Checks that `issuer` is a pool's URL over https, or http on a loopback
/// address; says whether it is on loopback.
fn check_issuer(issuer: &str) -> Result<bool, CognitoConfigError> {
    let url = reqwest::Url::parse(issuer)
        .map_err(|_| CognitoConfigError::IssuerNotUrl(issuer.to_owned()))?;
    let host = url.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(CognitoConfigError::IssuerNotHttps(issuer.to_owned())),
    }
    let shaped = url.path().len() > 1
        && !issuer.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !shaped {
        return Err(CognitoConfigError::IssuerShape(issuer.to_owned()));
    }
    Ok(loopback)
}

/// The RS256 signing keys of a JWKS, by `kid`. An entry that is not one
/// (another key type or use, no `kid`, a shape the library does not know)
/// is skipped, not fatal: a pool may publish other keys beside its own.
fn signing_keys(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, JwksError> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Value>,
    }
    let jwks: Jwks = serde_json::from_slice(body).map_err(|_| JwksError::NotJwks)?;
    let mut keys = HashMap::new();
    for entry in jwks.keys {
        if keys.len() == JWKS_KEYS_MAX {
            tracing::warn!(
                kept = JWKS_KEYS_MAX,
                "the key set holds more keys than are kept"
            );
            break;
        }
        if let Some((kid, key)) = serde_json::from_value::<Jwk>(entry)
            .ok()
            .and_then(|jwk| signing_key(&jwk))
        {
            keys.insert(kid, Arc::new(key));
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoSigningKey);
    }
    Ok(keys)
}

fn signing_key(jwk: &Jwk) -> Option<(String, DecodingKey)> {
    let kid = jwk.common.key_id.clone()?;
    if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
        return None;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_algorithm
        .is_some_and(|a| a != KeyAlgorithm::RS256)
    {
        return None;
    }
    DecodingKey::from_jwk(jwk)
        .ok()
        .map(|decoding| (kid, decoding))
}

/// What a Cognito token says of its user, as text: from a token's claims or
/// from API Gateway's authorizer.
struct Identity<'a> {
    sub: Option<&'a str>,
    tenant: Option<&'a str>,
    vendor: Option<&'a str>,
    employee: Option<&'a str>,
    roles: RoleSet,
}

/// The principal of an identity: ids parsed as the domain's, then the rules
/// every token obeys. An empty attribute counts as absent.
fn principal_of(identity: &Identity<'_>) -> Result<Principal, AuthError> {
    let user = present(identity.sub)
        .ok_or(AuthError::InvalidClaims("no sub"))
        .and_then(|t| {
            UserId::parse(t).map_err(|_| AuthError::InvalidClaims("sub is not a user id"))
        })?;
    let tenant = present(identity.tenant)
        .ok_or(AuthError::InvalidClaims("no custom:tenant_id"))
        .and_then(|t| {
            TenantId::parse(t)
                .map_err(|_| AuthError::InvalidClaims("custom:tenant_id is not a tenant id"))
        })?;
    let vendor = present(identity.vendor)
        .map(VendorId::parse)
        .transpose()
        .map_err(|_| AuthError::InvalidClaims("custom:vendor_id is not a vendor id"))?;
    let employee = present(identity.employee)
        .map(EmployeeId::parse)
        .transpose()
        .map_err(|_| AuthError::InvalidClaims("custom:employee_id is not an employee id"))?;
    Principal::try_new(tenant, user, identity.roles, vendor, employee)
}

fn present(text: Option<&str>) -> Option<&str> {
    text.filter(|t| !t.is_empty())
}

/// The roles some groups grant: [`GROUP_ROLES`], others ignored.
fn roles_of_groups<'a>(groups: impl IntoIterator<Item = &'a str>) -> RoleSet {
    groups
        .into_iter()
        .filter_map(|group| {
            GROUP_ROLES
                .iter()
                .find(|(name, _)| *name == group)
                .map(|&(_, role)| role)
        })
        .collect()
}

/// `cognito:groups` flattened into one string, as API Gateway passes it:
/// `[Admin Vendor]` (what both REST and HTTP APIs send), a JSON array
/// written as a string (`["Admin","Vendor"]`), or `Admin,Vendor`.
fn roles_of_group_text(text: &str) -> RoleSet {
    let text = text.trim();
    if let Ok(groups) = serde_json::from_str::<Vec<String>>(text) {
        return roles_of_groups(groups.iter().map(String::as_str));
    }
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    roles_of_groups(inner.split([' ', ',']).filter(|g| !g.is_empty()))
}

/// The principal of claims API Gateway's Cognito authorizer has verified:
/// a REST API's `requestContext.authorizer.claims`, or an HTTP API's
/// `requestContext.authorizer.jwt.claims`. Claims are mapped as a
/// [`CognitoVerifier`] maps a token's (the module doc), with the rules of
/// every token.
///
/// API Gateway passes every value as a string, and `cognito:groups` as one
/// string: `"[Admin Vendor]"`. Also accepted for groups: a JSON array, a
/// JSON array written as a string, a comma-separated string.
///
/// Nothing here checks a signature, an expiry, an issuer or an audience:
/// call it only on claims an authorizer checked, which reach the function
/// beside the request and never from the request itself.
///
/// # Errors
/// [`AuthError::InvalidClaims`] when a claim is missing, not text, not an
/// id, or the roles and ids disagree.
pub fn principal_from_authorizer(
    claims: &serde_json::Map<String, Value>,
) -> Result<Principal, AuthError> {
    let text = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(SHAPE),
    };
    let roles = match claims.get(CLAIM_GROUPS) {
        None | Some(Value::Null) => RoleSet::EMPTY,
        Some(Value::String(text)) => roles_of_group_text(text),
        Some(Value::Array(groups)) => {
            let groups: Option<Vec<&str>> = groups.iter().map(Value::as_str).collect();
            roles_of_groups(groups.ok_or(SHAPE)?)
        }
        Some(_) => return Err(SHAPE),
    };
    principal_of(&Identity {
        sub: text(CLAIM_SUB)?,
        tenant: text(CLAIM_TENANT)?,
        vendor: text(CLAIM_VENDOR)?,
        employee: text(CLAIM_EMPLOYEE)?,
        roles,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn principal(
        tenant: &str,
        user: &str,
        roles: &[Role],
        vendor: Option<&str>,
        employee: Option<&str>,
    ) -> Principal {
        Principal {
            tenant_id: TenantId::new(tenant),
            user_id: UserId::new(user),
            roles: RoleSet::of(roles),
            vendor_id: vendor.map(VendorId::new),
            employee_id: employee.map(EmployeeId::new),
        }
    }

    /// A REST API's `requestContext.authorizer.claims`, as API Gateway
    /// passes an ID token's claims: every value a string.
    fn rest_claims() -> Value {
        json!({
            "sub": "2ada3f7a-b5f5-4e0f-a765-dfad93f836d2",
            "aud": "a2h23w26tio78d8wkhr7fvw1w",
            "email_verified": "false",
            "event_id": "a6849bfe-e845-42a0-a706-1e38b02d35f5",
            "token_use": "id",
            "auth_time": "1796690255",
            "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf",
            "cognito:username": "2ada3f7a-b5f5-4e0f-a765-dfad93f836d2",
            "exp": "Wed Dec 09 00:37:35 UTC 2026",
            "iat": "Tue Dec 08 00:37:35 UTC 2026",
            "email": "vendor@example.com",
            "custom:tenant_id": "t1",
            "custom:vendor_id": "V1",
            "cognito:groups": "[Admin Vendor]"
        })
    }

    #[test]
    fn rest_api_claims_make_a_principal() {
        let p = principal_from_authorizer(&claims(rest_claims())).unwrap();
        assert_eq!(
            p,
            principal(
                "t1",
                "2ada3f7a-b5f5-4e0f-a765-dfad93f836d2",
                &[Role::Admin, Role::Vendor],
                Some("V1"),
                None
            )
        );
    }

    /// An HTTP API's `requestContext.authorizer.jwt.claims`: strings again,
    /// numbers as their decimal text.
    #[test]
    fn http_api_claims_make_a_principal() {
        let jwt_claims = json!({
            "sub": "9d1f6a2e-0000-4000-8000-000000000001",
            "client_id": "a2h23w26tio78d8wkhr7fvw1w",
            "token_use": "access",
            "scope": "aws.cognito.signin.user.admin",
            "exp": "1796776655",
            "iat": "1796690255",
            "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf",
            "custom:tenant_id": "t2",
            "custom:employee_id": "E7",
            "cognito:groups": "[Employee]"
        });
        assert_eq!(
            principal_from_authorizer(&claims(jwt_claims)),
            Ok(principal(
                "t2",
                "9d1f6a2e-0000-4000-8000-000000000001",
                &[Role::Employee],
                None,
                Some("E7")
            ))
        );
    }

    #[test]
    fn every_spelling_of_groups_is_read() {
        for groups in [
            json!("[Admin Vendor]"),
            json!("[Vendor  Admin ]"),
            json!("Admin,Vendor"),
            json!("Admin, Vendor"),
            json!("[\"Admin\",\"Vendor\"]"),
            json!(["Admin", "Vendor"]),
            json!("[Admin Vendor Support]"),
        ] {
            let mut c = claims(rest_claims());
            c.insert(CLAIM_GROUPS.into(), groups.clone());
            assert_eq!(
                principal_from_authorizer(&c).map(|p| p.roles),
                Ok(RoleSet::of(&[Role::Admin, Role::Vendor])),
                "{groups}"
            );
        }
    }

    #[test]
    fn groups_that_grant_no_role_are_refused() {
        for groups in [
            json!("[]"),
            json!(""),
            json!("[Support]"),
            json!("[admin]"),
            json!([]),
            Value::Null,
        ] {
            let mut c = claims(rest_claims());
            c.insert(CLAIM_GROUPS.into(), groups.clone());
            c.remove(CLAIM_VENDOR);
            assert_eq!(
                principal_from_authorizer(&c),
                Err(AuthError::InvalidClaims("no role")),
                "{groups}"
            );
        }
        let mut c = claims(rest_claims());
        c.remove(CLAIM_GROUPS);
        c.remove(CLAIM_VENDOR);
        assert_eq!(
            principal_from_authorizer(&c),
            Err(AuthError::InvalidClaims("no role"))
        );
    }

    #[test]
    fn authorizer_claims_obey_the_rules_of_every_token() {
        let cases: [(&str, Value, AuthError); 8] = [
            (
                "custom:vendor_id",
                Value::Null,
                AuthError::InvalidClaims("vendor role without vendor"),
            ),
            (
                "cognito:groups",
                json!("[Admin]"),
                AuthError::InvalidClaims("vendor without vendor role"),
            ),
            (
                "custom:employee_id",
                json!("E1"),
                AuthError::InvalidClaims("employee without employee role"),
            ),
            (
                "custom:tenant_id",
                Value::Null,
                AuthError::InvalidClaims("no custom:tenant_id"),
            ),
            (
                "custom:tenant_id",
                json!("t 1"),
                AuthError::InvalidClaims("custom:tenant_id is not a tenant id"),
            ),
            ("sub", Value::Null, AuthError::InvalidClaims("no sub")),
            ("custom:vendor_id", json!(42), SHAPE),
            ("cognito:groups", json!(["Admin", 7]), SHAPE),
        ];
        for (claim, value, error) in cases {
            let mut c = claims(rest_claims());
            c.insert(claim.into(), value.clone());
            assert_eq!(
                principal_from_authorizer(&c),
                Err(error),
                "{claim}: {value}"
            );
        }
    }

    #[test]
    fn empty_attributes_count_as_absent() {
        let mut c = claims(rest_claims());
        c.insert(CLAIM_GROUPS.into(), json!("[Admin]"));
        c.insert(CLAIM_VENDOR.into(), json!(""));
        c.insert(CLAIM_EMPLOYEE.into(), json!(""));
        let p = principal_from_authorizer(&c).unwrap();
        assert_eq!((p.vendor_id, p.employee_id), (None, None));
    }

    #[test]
    fn an_audience_names_the_client_exactly() {
        let names = |aud: Value| audience_names(Some(&aud), "client");
        assert!(names(json!("client")));
        assert!(names(json!(["other", "client"])));
        for other in [
            json!("Client"),
            json!("client "),
            json!(["other"]),
            json!([]),
            json!(7),
            json!({"client": true}),
            Value::Null,
        ] {
            assert!(!names(other.clone()), "{other}");
        }
        assert!(!audience_names(None, "client"));
    }

    #[test]
    fn issuers_must_be_https_pool_urls() {
        for ok in [
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf",
            "http://127.0.0.1:9229/local_6Ecz1aCY",
            "http://localhost:9229/local_6Ecz1aCY",
            "http://[::1]:9229/local_6Ecz1aCY",
        ] {
            assert!(check_issuer(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_issuer("https://cognito-idp.us-east-1.amazonaws.com/p").ok(),
            Some(false)
        );
        for (bad, why) in [
            ("not a url", "IssuerNotUrl"),
            (
                "http://cognito-idp.us-east-1.amazonaws.com/us-east-1_X",
                "IssuerNotHttps",
            ),
            ("http://10.0.0.1:9229/pool", "IssuerNotHttps"),
            ("ftp://127.0.0.1/pool", "IssuerNotHttps"),
            ("https://cognito-idp.us-east-1.amazonaws.com", "IssuerShape"),
            (
                "https://cognito-idp.us-east-1.amazonaws.com/",
                "IssuerShape",
            ),
            (
                "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_X/",
                "IssuerShape",
            ),
            (
                "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_X?a=b",
                "IssuerShape",
            ),
            (
                "https://u:p@cognito-idp.us-east-1.amazonaws.com/us-east-1_X",
                "IssuerShape",
            ),
        ] {
            let error = format!("{:?}", check_issuer(bad).unwrap_err());
            assert!(error.starts_with(why), "{bad}: {error}");
        }
    }

    #[test]
    fn only_rsa_signing_keys_are_kept() {
        // Any base64url modulus will do: nothing is verified with these.
        let n = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            [0xc5_u8; 256],
        );
        let rsa = |kid: &str, extra: Value| {
            let mut key = json!({"kty": "RSA", "e": "AQAB", "n": n, "kid": kid});
            for (k, v) in extra.as_object().unwrap() {
                key[k] = v.clone();
            }
            key
        };
        let jwks = json!({"keys": [
            rsa("plain", json!({})),
            rsa("sig", json!({"use": "sig", "alg": "RS256"})),
            rsa("enc", json!({"use": "enc"})),
            rsa("rs512", json!({"alg": "RS512"})),
            rsa("oaep", json!({"alg": "RSA-OAEP"})),
            {"kty": "RSA", "e": "AQAB", "n": n},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "ec"},
            {"kty": "RSA", "kid": "broken"},
            "not a key"
        ]});
        let keys = signing_keys(&serde_json::to_vec(&jwks).unwrap()).unwrap();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["plain", "sig"]);

        for refused in [
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}),
            json!({"keys": []}),
            json!({"no": "keys"}),
            json!([1, 2]),
        ] {
            assert!(
                signing_keys(&serde_json::to_vec(&refused).unwrap()).is_err(),
                "{refused}"
            );
        }
        let many: Vec<Value> = (0..JWKS_KEYS_MAX + 5)
            .map(|i| rsa(&format!("k{i}"), json!({})))
            .collect();
        let kept = signing_keys(&serde_json::to_vec(&json!({ "keys": many })).unwrap()).unwrap();
        assert_eq!(kept.len(), JWKS_KEYS_MAX);
    }
}
