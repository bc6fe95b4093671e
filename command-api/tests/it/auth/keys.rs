//! A stand-in user pool: RSA key pairs made here, tokens signed with them
//! as Cognito signs its own, and a real HTTP server on loopback publishing
//! the pool's JWKS, which counts how often it is fetched.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _};
use rsa::pkcs8::LineEnding;
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

/// The pool's id: the last segment of its issuer.
pub const POOL: &str = "us-east-1_TestPool";
/// The app client tokens are issued to.
pub const CLIENT: &str = "3n4lt3st0cl13nt";
/// Bits of the test keys: what Cognito uses.
const KEY_BITS: usize = 2048;

/// Two key pairs per process, each made on first use: making one takes
/// seconds in a debug build.
fn key_pair(index: usize) -> &'static RsaPrivateKey {
    static PAIRS: [OnceLock<RsaPrivateKey>; 2] = [OnceLock::new(), OnceLock::new()];
    PAIRS[index].get_or_init(|| {
        RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS).expect("an RSA key")
    })
}

/// A signing key of the pool, named by its `kid`.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    private: RsaPrivateKey,
}

impl Signer {
    /// The pool's first key under `kid`.
    pub fn first(kid: &str) -> Signer {
        Signer {
            kid: kid.to_owned(),
            private: key_pair(0).clone(),
        }
    }

    /// The pool's second key under `kid`.
    pub fn second(kid: &str) -> Signer {
        Signer {
            kid: kid.to_owned(),
            private: key_pair(1).clone(),
        }
    }

    fn public(&self) -> RsaPublicKey {
        self.private.to_public_key()
    }

    /// The key as its JWKS entry, as Cognito publishes it.
    pub fn jwk(&self) -> Value {
        let public = self.public();
        json!({
            "alg": "RS256",
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            "kid": self.kid,
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "use": "sig",
        })
    }

    /// `claims` signed RS256 with this key, its `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_naming(Some(&self.kid), claims)
    }

    /// `claims` signed RS256 with this key, naming no key.
    pub fn sign_without_kid(&self, claims: &Value) -> String {
        self.sign_naming(None, claims)
    }

    fn sign_naming(&self, kid: Option<&str>, claims: &Value) -> String {
        let der = self.private.to_pkcs1_der().expect("DER");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes()))
            .expect("signs")
    }

    /// The public key's bytes as a careless verifier might hold them: DER
    /// and PEM, which an HS256 forger uses as the HMAC secret.
    pub fn public_bytes(&self) -> [Vec<u8>; 2] {
        let public = self.public();
        [
            public.to_pkcs1_der().expect("DER").as_bytes().to_vec(),
            public
                .to_pkcs1_pem(LineEnding::LF)
                .expect("PEM")
                .into_bytes(),
        ]
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An ID token's claims as Cognito issues them for a user of `tenant` in
/// `groups`, with the vendor or employee attributes given.
pub fn id_claims(issuer: &str, tenant: &str, groups: &[&str], ids: &[(&str, &str)]) -> Value {
    let now = now();
    let mut claims = json!({
        "sub": "5f0c1e2a-8b7d-4c3e-9f10-2a3b4c5d6e7f",
        "aud": CLIENT,
        "email_verified": true,
        "event_id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "token_use": "id",
        "auth_time": now,
        "iss": issuer,
        "cognito:username": "5f0c1e2a-8b7d-4c3e-9f10-2a3b4c5d6e7f",
        "exp": now + 3600,
        "iat": now,
        "jti": "c0ffee00-0000-4000-8000-000000000000",
        "email": "someone@example.com",
        "custom:tenant_id": tenant,
        "cognito:groups": groups,
    });
    for (attribute, value) in ids {
        claims[format!("custom:{attribute}")] = json!(value);
    }
    claims
}

/// An access token's claims, with the custom attributes a V2
/// pre-token-generation trigger adds.
pub fn access_claims(issuer: &str, tenant: &str, groups: &[&str]) -> Value {
    let now = now();
    json!({
        "sub": "5f0c1e2a-8b7d-4c3e-9f10-2a3b4c5d6e7f",
        "client_id": CLIENT,
        "event_id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": now,
        "iss": issuer,
        "exp": now + 3600,
        "iat": now,
        "jti": "c0ffee00-0000-4000-8000-000000000001",
        "username": "5f0c1e2a-8b7d-4c3e-9f10-2a3b4c5d6e7f",
        "custom:tenant_id": tenant,
        "cognito:groups": groups,
    })
}

/// `token` with its header replaced by one naming `kid`: what a forger
/// without the pool's keys sends to make a verifier look a key up. Its
/// signature no longer matches, which a verifier never gets to see.
pub fn naming_kid(token: &str, kid: &str) -> String {
    let (_, rest) = token.split_once('.').expect("a JWT");
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("JSON"))
    )
}

/// A JWT with no signature at all, `alg: none`, built by hand since no
/// library will.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON"));
    format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        part(claims)
    )
}

/// `claims` signed HS256 with `secret`, naming `kid`.
pub fn hmac_signed(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("signs")
}

struct Published {
    jwks: Mutex<Value>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

/// The pool's JWKS endpoint on a loopback port.
pub struct JwksServer {
    /// The pool's issuer: `http://127.0.0.1:PORT/POOL`.
    pub issuer: String,
    published: Arc<Published>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves a JWKS of `signers`' public keys.
    pub async fn start(signers: &[&Signer]) -> JwksServer {
        let published = Arc::new(Published {
            jwks: Mutex::new(jwks(signers)),
            fetches: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        });
        let app = Router::new()
            .route(&format!("/{POOL}/.well-known/jwks.json"), get(serve_jwks))
            .with_state(published.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serves");
        });
        JwksServer {
            issuer: format!("http://{addr}/{POOL}"),
            published,
            task,
        }
    }

    /// How many times the JWKS was asked for.
    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    /// Publishes `signers`' keys from now on (a key rotation).
    pub fn publish(&self, signers: &[&Signer]) {
        *self.published.jwks.lock().expect("not poisoned") = jwks(signers);
    }

    /// Answers `500` from now on, or not.
    pub fn fail(&self, failing: bool) {
        self.published.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn jwks(signers: &[&Signer]) -> Value {
    json!({ "keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>() })
}

async fn serve_jwks(State(published): State<Arc<Published>>) -> Response {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    if published.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let jwks = published.jwks.lock().expect("not poisoned").clone();
    axum::Json(jwks).into_response()
}
