//! The principal an entry point hands over as a request extension (API
//! Gateway's authorizer verified the token) is the caller, whatever the
//! request's headers say; without one, the bearer token is verified.

use std::sync::Arc;

use axum::http::StatusCode;
use command_api::auth::principal_from_authorizer;
use serde_json::{Value, json};

use super::harness::{
    Ledger, NEW_VENDOR, RefuseAll, T1, T2, V1, V2, admin_of, get, register_vendor, send, vendor_of,
};

#[tokio::test]
async fn an_authenticated_extension_is_the_caller() {
    let ledger = Ledger::new().await;
    // Every token is refused: only the extension can get a request in.
    let router = ledger.router(Arc::new(RefuseAll));

    for tenant in [T1, T2] {
        let reply = send(&router, get("/v1/tenant").authenticated(admin_of(tenant))).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["tenant_id"], tenant);
    }
    // The extension wins over whatever the header carries.
    let reply = send(
        &router,
        get("/v1/tenant")
            .bearer("not.a.token")
            .authenticated(admin_of(T2)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["tenant_id"], T2);

    // Without it, the header is all there is.
    let reply = ledger.refused(&router, get("/v1/tenant")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    let reply = ledger
        .refused(&router, register_vendor(NEW_VENDOR).bearer("not.a.token"))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");

    // The extension's roles and tenant bound it like a token's.
    let vendor = vendor_of(T1, V1);
    let reply = ledger
        .refused(&router, register_vendor(NEW_VENDOR).authenticated(vendor))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    let reply = ledger
        .refused(
            &router,
            get(&format!("/v1/streams/vendor/{V2}/events")).authenticated(admin_of(T1)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
}

/// The whole path of a REST API's request: the authorizer's claims, as
/// strings, become the principal the router serves.
#[tokio::test]
async fn authorizer_claims_reach_the_router() {
    let ledger = Ledger::new().await;
    let router = ledger.router(Arc::new(RefuseAll));
    let claims = json!({
        "sub": "2ada3f7a-b5f5-4e0f-a765-dfad93f836d2",
        "aud": "a2h23w26tio78d8wkhr7fvw1w",
        "token_use": "id",
        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf",
        "exp": "Wed Dec 09 00:37:35 UTC 2026",
        "custom:tenant_id": T2,
        "custom:vendor_id": V2,
        "cognito:groups": "[Vendor Cashier]"
    });
    let Value::Object(claims) = claims else {
        unreachable!("an object")
    };
    let principal = principal_from_authorizer(&claims).expect("a principal");
    let reply = send(&router, get("/v1/tenant").authenticated(principal)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["tenant_id"], T2);
    let reply = ledger
        .refused(
            &router,
            register_vendor(NEW_VENDOR).authenticated(principal),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
}
