//! Tokens of a stand-in pool, good and forged, through the API's router:
//! each forgery is refused with the status and the reason of the check it
//! fails, and writes nothing; the pool's keys are fetched only as often as
//! the cache allows.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use command_api::auth::{
    CognitoConfig, CognitoVerifier, JWKS_REFETCH_INTERVAL_MIN, JwksPolicy, TOKEN_LEEWAY_SECONDS,
    TokenUse, Verifier,
};
use ledger_store::{CommitLog as _, Position};
use serde_json::{Value, json};

use super::harness::{Ledger, NEW_VENDOR, T1, T2, V1, V2, get, post, register_vendor, send};
use super::keys::{
    CLIENT, JwksServer, Signer, access_claims, hmac_signed, id_claims, naming_kid, now, unsigned,
};

const KID: &str = "key-1";

fn config(issuer: &str, token_use: TokenUse) -> CognitoConfig {
    CognitoConfig {
        issuer: issuer.to_owned(),
        client_id: CLIENT.to_owned(),
        token_use,
    }
}

fn verifier(issuer: &str, token_use: TokenUse) -> Arc<CognitoVerifier> {
    Arc::new(CognitoVerifier::new(config(issuer, token_use)).expect("a verifier"))
}

/// A pool's refetch interval short enough to wait out in a test.
fn quick(refetch_interval_min: Duration) -> JwksPolicy {
    JwksPolicy {
        refetch_interval_min,
        ..JwksPolicy::default()
    }
}

fn admin(issuer: &str) -> Value {
    id_claims(issuer, T1, &["Admin"], &[])
}

/// `claims` with `changes` applied (`null` removes a claim).
fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().expect("an object") {
        if value.is_null() {
            claims.as_object_mut().expect("an object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

#[tokio::test]
async fn forged_tokens_are_refused_and_write_nothing() {
    let ledger = Ledger::new().await;
    let signer = Signer::first(KID);
    let pool = JwksServer::start(&[&signer]).await;
    let router = ledger.router(verifier(&pool.issuer, TokenUse::Id));
    let issuer = pool.issuer.as_str();
    let late = now() - TOKEN_LEEWAY_SECONDS - 60;
    let early = now() + TOKEN_LEEWAY_SECONDS + 60;
    let stranger = Signer::second(KID);
    let [public_der, public_pem] = signer.public_bytes();
    let good = signer.sign(&admin(issuer));
    let (header, signature) = (
        good.split('.').next().expect("a header"),
        good.rsplit('.').next().expect("a signature"),
    );
    let payload = good.split('.').nth(1).expect("a payload");
    let elevated = signer.sign(&id_claims(issuer, T2, &["Admin"], &[]));
    let elevated_payload = elevated.split('.').nth(1).expect("a payload");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            signer.sign(&with(
                admin(issuer),
                json!({"exp": late, "iat": late - 3600}),
            )),
            "token has expired",
        ),
        (
            "not yet valid",
            signer.sign(&with(admin(issuer), json!({"nbf": early}))),
            "token claims are not valid: not yet valid",
        ),
        (
            "issued in the future",
            signer.sign(&with(admin(issuer), json!({"iat": early}))),
            "token claims are not valid: issued in the future",
        ),
        (
            "another issuer",
            signer.sign(&with(
                admin(issuer),
                json!({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"}),
            )),
            "token claims are not valid: wrong issuer",
        ),
        (
            "another pool on the same host",
            signer.sign(&with(admin(issuer), json!({"iss": format!("{issuer}x")}))),
            "token claims are not valid: wrong issuer",
        ),
        (
            "another app client",
            signer.sign(&with(admin(issuer), json!({"aud": "some-other-client"}))),
            "token claims are not valid: wrong audience",
        ),
        (
            "an audience that is not a string",
            signer.sign(&with(admin(issuer), json!({"aud": 7}))),
            "token claims are not valid: wrong audience",
        ),
        (
            "issuers as an array",
            signer.sign(&with(admin(issuer), json!({"iss": [issuer]}))),
            "token claims are not valid: claims do not have the expected shape",
        ),
        (
            "no audience",
            signer.sign(&with(admin(issuer), json!({"aud": null}))),
            "token claims are not valid: wrong audience",
        ),
        (
            "an access token where ID tokens are configured",
            signer.sign(&access_claims(issuer, T1, &["Admin"])),
            "token claims are not valid: wrong token use",
        ),
        (
            "no token use",
            signer.sign(&with(admin(issuer), json!({"token_use": null}))),
            "token claims are not valid: claims do not have the expected shape",
        ),
        (
            "signed by a key the pool does not hold, under its kid",
            stranger.sign(&admin(issuer)),
            "token signature is not valid",
        ),
        (
            "claims swapped under a valid signature",
            format!("{header}.{elevated_payload}.{signature}"),
            "token signature is not valid",
        ),
        (
            "a kid the pool does not publish",
            Signer::first("key-unknown").sign(&admin(issuer)),
            "token is signed with a key the issuer does not publish",
        ),
        (
            "alg none",
            unsigned(KID, &admin(issuer)),
            "malformed bearer token",
        ),
        (
            "a good header and payload with the signature cut",
            format!("{header}.{payload}."),
            "token signature is not valid",
        ),
        (
            "HS256 keyed with the public key's DER",
            hmac_signed(KID, &admin(issuer), &public_der),
            "token signature is not valid",
        ),
        (
            "HS256 keyed with the public key's PEM",
            hmac_signed(KID, &admin(issuer), &public_pem),
            "token signature is not valid",
        ),
        (
            "no kid",
            signer.sign_without_kid(&admin(issuer)),
            "malformed bearer token",
        ),
        (
            "no tenant",
            signer.sign(&with(admin(issuer), json!({"custom:tenant_id": null}))),
            "token claims are not valid: no custom:tenant_id",
        ),
        (
            "groups that grant no role",
            signer.sign(&id_claims(issuer, T1, &["Support", "admin"], &[])),
            "token claims are not valid: no role",
        ),
        (
            "a vendor group without a vendor",
            signer.sign(&id_claims(issuer, T1, &["Admin", "Vendor"], &[])),
            "token claims are not valid: vendor role without vendor",
        ),
    ];
    for (what, token, reason) in cases {
        let reply = ledger
            .refused(&router, register_vendor(NEW_VENDOR).bearer(&token))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {reply:?}");
        assert_eq!(reply.code(), "unauthorized", "{what}");
        assert_eq!(reply.detail(), reason, "{what}");
    }

    // The same write with the good token is accepted: the check above
    // would have seen it.
    let head = ledger_head(&ledger);
    let reply = send(&router, register_vendor(NEW_VENDOR).bearer(&good)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_ne!(
        ledger_head(&ledger),
        head,
        "the accepted write is in the log"
    );
}

fn ledger_head(ledger: &Ledger) -> Position {
    ledger.store.head()
}

#[tokio::test]
async fn access_tokens_are_checked_against_client_id() {
    let ledger = Ledger::new().await;
    let signer = Signer::first(KID);
    let pool = JwksServer::start(&[&signer]).await;
    let router = ledger.router(verifier(&pool.issuer, TokenUse::Access));
    let issuer = pool.issuer.as_str();

    let good = signer.sign(&access_claims(issuer, T1, &["Admin"]));
    let reply = send(&router, get("/v1/tenant").bearer(&good)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["tenant_id"], T1);

    let cases = [
        (
            "an ID token where access tokens are configured",
            signer.sign(&admin(issuer)),
            "token claims are not valid: wrong token use",
        ),
        (
            "another app client",
            signer.sign(&with(
                access_claims(issuer, T1, &["Admin"]),
                json!({"client_id": "some-other-client"}),
            )),
            "token claims are not valid: wrong client",
        ),
        (
            "no client",
            signer.sign(&with(
                access_claims(issuer, T1, &["Admin"]),
                json!({"client_id": null}),
            )),
            "token claims are not valid: wrong client",
        ),
        (
            // What Cognito issues when no V2 trigger adds the attributes.
            "no custom attributes",
            signer.sign(&with(
                access_claims(issuer, T1, &["Admin"]),
                json!({"custom:tenant_id": null}),
            )),
            "token claims are not valid: no custom:tenant_id",
        ),
    ];
    for (what, token, reason) in cases {
        let reply = ledger
            .refused(&router, register_vendor(NEW_VENDOR).bearer(&token))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {reply:?}");
        assert_eq!(reply.detail(), reason, "{what}");
    }
}

/// The tenant comes from the token: another tenant's resources are not
/// found, as the API answers for every id the caller's tenant lacks.
#[tokio::test]
async fn a_token_reaches_only_its_own_tenant() {
    let ledger = Ledger::new().await;
    let signer = Signer::first(KID);
    let pool = JwksServer::start(&[&signer]).await;
    let router = ledger.router(verifier(&pool.issuer, TokenUse::Id));
    let token = signer.sign(&admin(&pool.issuer));

    let reply = send(&router, get("/v1/tenant").bearer(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["tenant_id"], T1);
    let own = send(
        &router,
        get(&format!("/v1/streams/vendor/{V1}/events")).bearer(&token),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");

    let theirs = ledger
        .refused(
            &router,
            get(&format!("/v1/streams/vendor/{V2}/events")).bearer(&token),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs:?}");
    assert_eq!(theirs.code(), "not_found");

    // A write on their vendor: refused as not found, and no event (the
    // refusal is remembered under the key in the caller's own tenant, as
    // every rejection is).
    let head = ledger_head(&ledger);
    let write = send(
        &router,
        post(
            &format!("/v1/vendors/{V2}/commission"),
            json!({"commission_rate": 0}),
        )
        .bearer(&token),
    )
    .await;
    assert_eq!(write.status, StatusCode::NOT_FOUND, "{write:?}");
    assert_eq!(write.code(), "vendor_not_found");
    assert_eq!(ledger_head(&ledger), head, "no event was appended");
}

#[tokio::test]
async fn a_service_token_is_forbidden_admin_routes() {
    let ledger = Ledger::new().await;
    let signer = Signer::first(KID);
    let pool = JwksServer::start(&[&signer]).await;
    let router = ledger.router(verifier(&pool.issuer, TokenUse::Id));
    let service = signer.sign(&id_claims(&pool.issuer, T1, &["Service"], &[]));
    let vendor = signer.sign(&id_claims(
        &pool.issuer,
        T1,
        &["Vendor"],
        &[("vendor_id", V1)],
    ));

    for token in [&service, &vendor] {
        let reply = ledger
            .refused(&router, register_vendor(NEW_VENDOR).bearer(token))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
        assert_eq!(reply.code(), "forbidden");
        let reply = ledger
            .refused(
                &router,
                get(&format!("/v1/streams/vendor/{V1}/events")).bearer(token),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    }
    // Verified, and reaching what its role allows.
    let reply = send(&router, get("/v1/tenant").bearer(&service)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

/// Refused tokens naming unknown keys cost the pool one fetch per interval
/// at most, however many arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    const BURST: usize = 50;
    let ledger = Ledger::new().await;
    let signer = Signer::first(KID);
    let pool = JwksServer::start(&[&signer]).await;
    let interval = Duration::from_secs(1);
    let verifier =
        CognitoVerifier::with_policy(config(&pool.issuer, TokenUse::Id), quick(interval))
            .expect("a verifier");
    let router = ledger.router(Arc::new(verifier));
    let good = signer.sign(&admin(&pool.issuer));
    assert_eq!(
        send(&router, get("/v1/tenant").bearer(&good)).await.status,
        StatusCode::OK
    );
    assert_eq!(pool.fetches(), 1);

    let tokens: Vec<Vec<String>> = (0..2)
        .map(|round| {
            (0..BURST)
                .map(|i| naming_kid(&good, &format!("made-up-{round}-{i}")))
                .collect()
        })
        .collect();
    tokio::time::sleep(interval).await;
    for (round, tokens) in tokens.into_iter().enumerate() {
        let mut requests = tokio::task::JoinSet::new();
        for token in tokens {
            let router = router.clone();
            requests.spawn(async move { send(&router, get("/v1/tenant").bearer(&token)).await });
        }
        let replies = requests.join_all().await;
        assert_eq!(replies.len(), BURST);
        for reply in replies {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
            assert_eq!(
                reply.detail(),
                "token is signed with a key the issuer does not publish"
            );
        }
        // One refetch for the first burst, once the interval had passed;
        // none for the second, inside the interval.
        assert_eq!(pool.fetches(), 2, "after burst {round}");
    }
    // Known keys never wait for the pool.
    assert_eq!(
        send(&router, get("/v1/tenant").bearer(&good)).await.status,
        StatusCode::OK
    );
    assert_eq!(pool.fetches(), 2);
}

/// With the named interval (10 s), a burst right after the first fetch
/// fetches nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_named_interval_holds_back_refetches() {
    assert_eq!(JWKS_REFETCH_INTERVAL_MIN, Duration::from_secs(10));
    let signer = Signer::first(KID);
    let pool = JwksServer::start(&[&signer]).await;
    let verifier = verifier(&pool.issuer, TokenUse::Id);
    let good = signer.sign(&admin(&pool.issuer));
    assert!(verifier.verify(&good).await.is_ok());
    let tokens: Vec<String> = (0..50)
        .map(|i| naming_kid(&good, &format!("made-up-{i}")))
        .collect();
    let mut checks = tokio::task::JoinSet::new();
    for token in tokens {
        let verifier = verifier.clone();
        checks.spawn(async move { verifier.verify(&token).await });
    }
    for result in checks.join_all().await {
        assert_eq!(result, Err(command_api::auth::AuthError::UnknownKey));
    }
    assert_eq!(pool.fetches(), 1);
}

/// A key the pool starts publishing (a rotation) is fetched when a token
/// first names it.
#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let old = Signer::first(KID);
    let new = Signer::second("key-2");
    let pool = JwksServer::start(&[&old]).await;
    let interval = Duration::from_millis(300);
    let verifier =
        CognitoVerifier::with_policy(config(&pool.issuer, TokenUse::Id), quick(interval))
            .expect("a verifier");
    assert!(
        verifier
            .verify(&old.sign(&admin(&pool.issuer)))
            .await
            .is_ok()
    );

    pool.publish(&[&old, &new]);
    tokio::time::sleep(interval).await;
    let principal = verifier.verify(&new.sign(&admin(&pool.issuer))).await;
    assert_eq!(
        principal.map(|p| p.tenant_id.to_string()),
        Ok(T1.to_owned())
    );
    assert_eq!(pool.fetches(), 2);

    // A key the pool stops publishing stops verifying once the set is
    // fetched again.
    pool.publish(&[&new]);
    let expired = CognitoVerifier::with_policy(
        config(&pool.issuer, TokenUse::Id),
        JwksPolicy {
            ttl: Duration::ZERO,
            ..quick(Duration::ZERO)
        },
    )
    .expect("a verifier");
    assert_eq!(
        expired.verify(&old.sign(&admin(&pool.issuer))).await,
        Err(command_api::auth::AuthError::UnknownKey)
    );
}

/// A pool whose keys cannot be fetched makes the API answer 503 (retry),
/// never 401, and write nothing.
#[tokio::test]
async fn unreachable_keys_are_503_and_write_nothing() {
    let ledger = Ledger::new().await;
    let signer = Signer::first(KID);
    // A port nothing listens on any more.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        listener.local_addr().expect("an address")
    };
    let failing = JwksServer::start(&[&signer]).await;
    failing.fail(true);
    for issuer in [
        format!("http://{closed}/{}", super::keys::POOL),
        failing.issuer.clone(),
    ] {
        let router = ledger.router(verifier(&issuer, TokenUse::Id));
        let token = signer.sign(&admin(&issuer));
        let reply = ledger
            .refused(&router, register_vendor(NEW_VENDOR).bearer(&token))
            .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert_eq!(reply.code(), "unavailable");
    }
    assert_eq!(failing.fetches(), 1);
}

/// Keys past their TTL stay in use while the pool cannot be reached, up to
/// the stale limit.
#[tokio::test]
async fn held_keys_serve_while_refreshes_fail() {
    let signer = Signer::first(KID);
    let pool = JwksServer::start(&[&signer]).await;
    let policy = JwksPolicy {
        ttl: Duration::from_millis(200),
        stale_max: Duration::from_millis(800),
        refetch_interval_min: Duration::ZERO,
        ..JwksPolicy::default()
    };
    let verifier = CognitoVerifier::with_policy(config(&pool.issuer, TokenUse::Id), policy)
        .expect("a verifier");
    let token = signer.sign(&admin(&pool.issuer));
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(pool.fetches(), 1, "a fresh set is not fetched again");

    pool.fail(true);
    tokio::time::sleep(policy.ttl).await;
    assert!(verifier.verify(&token).await.is_ok(), "stale, still usable");
    assert_eq!(pool.fetches(), 2, "a refresh was tried");

    tokio::time::sleep(policy.stale_max).await;
    assert_eq!(
        verifier.verify(&token).await,
        Err(command_api::auth::AuthError::KeysUnavailable)
    );
    pool.fail(false);
    assert!(verifier.verify(&token).await.is_ok(), "recovered");
}
