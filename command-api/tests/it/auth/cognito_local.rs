//! Tokens from a real issuer: cognito-local (started through
//! `scripts/emulator cognito`, which installs it on first use) holds a pool
//! with custom attributes, an app client, groups and users; users sign in
//! with `USER_PASSWORD_AUTH`, and the tokens it signs are verified against
//! the JWKS it serves, then used on the API.
//!
//! cognito-local's pre-token-generation trigger is the V1 kind, which
//! cannot touch access tokens, so its access tokens carry no custom
//! attributes, as the service's do without a V2 trigger: they pass every
//! check of the token and are refused for want of a tenant. The access
//! path with attributes is covered by the stand-in pool (`forged`).

use std::sync::Arc;

use aws_local::cognito::{User, UserPool};
use axum::http::StatusCode;
use command_api::auth::{
    AuthError, CognitoConfig, CognitoVerifier, Principal, RoleSet, TokenUse, Verifier,
};
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};

use super::harness::{Ledger, NEW_VENDOR, T1, T2, V1, V2, get, register_vendor, send};

/// The verifier of `pool`'s tokens of `token_use`.
fn config(pool: &UserPool, token_use: TokenUse) -> CognitoConfig {
    CognitoConfig {
        issuer: pool.issuer(),
        client_id: pool.client_id.clone(),
        token_use,
    }
}

fn verifier(pool: &UserPool, token_use: TokenUse) -> CognitoVerifier {
    CognitoVerifier::new(config(pool, token_use)).expect("a verifier")
}

fn principal(
    tenant: &str,
    user: &User,
    roles: &[Role],
    vendor: Option<&str>,
    employee: Option<&str>,
) -> Principal {
    Principal {
        tenant_id: TenantId::new(tenant),
        user_id: UserId::new(&user.sub),
        roles: RoleSet::of(roles),
        vendor_id: vendor.map(VendorId::new),
        employee_id: employee.map(EmployeeId::new),
    }
}

#[tokio::test]
async fn cognito_local_tokens_verify_to_their_principals() {
    let pool = UserPool::create("tally-verify").await;
    let admin = pool
        .user("admin@t1.example.com", &["Admin"], &[("tenant_id", T1)])
        .await;
    let cashier = pool
        .user(
            "cashier@t1.example.com",
            &["Vendor", "Cashier"],
            &[("tenant_id", T1), ("vendor_id", V1)],
        )
        .await;
    let employee = pool
        .user(
            "employee@t2.example.com",
            &["Employee", "Support"],
            &[("tenant_id", T2), ("employee_id", "E1")],
        )
        .await;
    let nobody = pool
        .user("nobody@t1.example.com", &["Support"], &[("tenant_id", T1)])
        .await;
    let expected = [
        (&admin, principal(T1, &admin, &[Role::Admin], None, None)),
        (
            &cashier,
            principal(T1, &cashier, &[Role::Vendor, Role::Cashier], Some(V1), None),
        ),
        (
            &employee,
            principal(T2, &employee, &[Role::Employee], None, Some("E1")),
        ),
    ];

    let id = verifier(&pool, TokenUse::Id);
    let access = verifier(&pool, TokenUse::Access);
    for (user, principal) in expected {
        let (id_token, access_token) = pool.sign_in(user).await;
        assert_eq!(id.verify(&id_token).await, Ok(principal), "{}", user.email);
        // Signature, issuer, token use and client all pass; Cognito puts
        // no custom attribute in an access token without a V2 trigger.
        assert_eq!(
            access.verify(&access_token).await,
            Err(AuthError::InvalidClaims("no custom:tenant_id")),
            "{}",
            user.email
        );
        assert_eq!(
            id.verify(&access_token).await,
            Err(AuthError::InvalidClaims("wrong token use"))
        );
        assert_eq!(
            access.verify(&id_token).await,
            Err(AuthError::InvalidClaims("wrong token use"))
        );
    }
    let (nobody_token, _) = pool.sign_in(&nobody).await;
    assert_eq!(
        id.verify(&nobody_token).await,
        Err(AuthError::InvalidClaims("no role"))
    );

    // Another app client of the same pool, and another pool of the same
    // issuer host, signing with the very same key.
    let (id_token, access_token) = pool.sign_in(&admin).await;
    let other_client = |token_use| {
        CognitoVerifier::new(CognitoConfig {
            client_id: "another-client".to_owned(),
            ..config(&pool, token_use)
        })
        .expect("a verifier")
    };
    assert_eq!(
        other_client(TokenUse::Id).verify(&id_token).await,
        Err(AuthError::InvalidClaims("wrong audience"))
    );
    assert_eq!(
        other_client(TokenUse::Access).verify(&access_token).await,
        Err(AuthError::InvalidClaims("wrong client"))
    );
    let other_pool = UserPool::create("tally-other").await;
    assert_eq!(
        verifier(&other_pool, TokenUse::Id).verify(&id_token).await,
        Err(AuthError::InvalidClaims("wrong issuer"))
    );
}

#[tokio::test]
async fn cognito_local_tokens_through_the_router() {
    let pool = UserPool::create("tally-router").await;
    let ledger = Ledger::new().await;
    let router = ledger.router(Arc::new(verifier(&pool, TokenUse::Id)));
    let admin = pool
        .user("admin@t1.example.com", &["Admin"], &[("tenant_id", T1)])
        .await;
    let cashier = pool
        .user(
            "cashier@t1.example.com",
            &["Cashier"],
            &[("tenant_id", T1), ("vendor_id", V1)],
        )
        .await;
    let (admin_token, _) = pool.sign_in(&admin).await;
    let (cashier_token, _) = pool.sign_in(&cashier).await;

    let reply = send(&router, get("/v1/tenant").bearer(&admin_token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["tenant_id"], T1);
    let own = send(
        &router,
        get(&format!("/v1/streams/vendor/{V1}/events")).bearer(&admin_token),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");
    assert_eq!(own.body["items"][0]["event"]["type"], "VendorRegistered");

    let theirs = ledger
        .refused(
            &router,
            get(&format!("/v1/streams/vendor/{V2}/events")).bearer(&admin_token),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs:?}");

    let reply = ledger
        .refused(&router, register_vendor(NEW_VENDOR).bearer(&cashier_token))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");

    let reply = send(&router, register_vendor(NEW_VENDOR).bearer(&admin_token)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["events"][0]["actor"]["user_id"], admin.sub);
}
