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

use std::process::Command;
use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use command_api::auth::{
    AuthError, CognitoConfig, CognitoVerifier, Principal, RoleSet, TokenUse, Verifier,
};
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use serde_json::{Value, json};

use super::harness::{Ledger, NEW_VENDOR, T1, T2, V1, V2, get, register_vendor, send};

const PASSWORD: &str = "Correct-Horse-9";

/// The process's cognito-local, started on first use and stopped by the
/// script's watchdog when the process exits.
fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/emulator");
        let output = Command::new(script)
            .args(["cognito", "start", "--watch-pid"])
            .arg(std::process::id().to_string())
            .output()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cognito-local did not start ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("endpoint="))
            .unwrap_or_else(|| panic!("no endpoint printed:\n{stdout}"))
            .to_owned()
    })
}

/// A user pool of cognito-local, with its app client.
struct Pool {
    http: reqwest::Client,
    endpoint: String,
    id: String,
    client_id: String,
}

/// One user as the pool holds it.
struct User {
    email: String,
    sub: String,
}

impl Pool {
    async fn create(name: &str) -> Pool {
        let endpoint = tokio::task::spawn_blocking(endpoint)
            .await
            .expect("cognito-local starts")
            .to_owned();
        let http = reqwest::Client::new();
        let attribute =
            |name: &str| json!({"Name": name, "AttributeDataType": "String", "Mutable": true});
        let created = call(
            &http,
            &endpoint,
            "CreateUserPool",
            json!({
                "PoolName": name,
                "Schema": [attribute("tenant_id"), attribute("vendor_id"), attribute("employee_id")],
            }),
        )
        .await;
        let id = text(&created["UserPool"]["Id"]);
        let client = call(
            &http,
            &endpoint,
            "CreateUserPoolClient",
            json!({
                "UserPoolId": id,
                "ClientName": "pos",
                "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            }),
        )
        .await;
        let client_id = text(&client["UserPoolClient"]["ClientId"]);
        let pool = Pool {
            http,
            endpoint,
            id,
            client_id,
        };
        for group in [
            "Admin", "Vendor", "Cashier", "Employee", "Service", "Support",
        ] {
            pool.call("CreateGroup", json!({"GroupName": group})).await;
        }
        pool
    }

    fn issuer(&self) -> String {
        format!("{}/{}", self.endpoint, self.id)
    }

    fn config(&self, token_use: TokenUse) -> CognitoConfig {
        CognitoConfig {
            issuer: self.issuer(),
            client_id: self.client_id.clone(),
            token_use,
        }
    }

    fn verifier(&self, token_use: TokenUse) -> CognitoVerifier {
        CognitoVerifier::new(self.config(token_use)).expect("a verifier")
    }

    /// An action on this pool.
    async fn call(&self, action: &str, mut body: Value) -> Value {
        body["UserPoolId"] = json!(self.id);
        call(&self.http, &self.endpoint, action, body).await
    }

    /// A confirmed user named by `email`, in `groups`, with custom
    /// attributes `custom` (`tenant_id`, `vendor_id`, `employee_id`).
    async fn user(&self, email: &str, groups: &[&str], custom: &[(&str, &str)]) -> User {
        let mut attributes = vec![json!({"Name": "email", "Value": email})];
        attributes.extend(
            custom
                .iter()
                .map(|(name, value)| json!({"Name": format!("custom:{name}"), "Value": value})),
        );
        let created = self
            .call(
                "AdminCreateUser",
                json!({
                    "Username": email,
                    "MessageAction": "SUPPRESS",
                    "UserAttributes": attributes,
                }),
            )
            .await;
        let sub = created["User"]["Attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["Name"] == "sub"))
            .map(|a| text(&a["Value"]))
            .unwrap_or_else(|| panic!("no sub: {created}"));
        self.call(
            "AdminSetUserPassword",
            json!({"Username": email, "Password": PASSWORD, "Permanent": true}),
        )
        .await;
        for group in groups {
            self.call(
                "AdminAddUserToGroup",
                json!({"Username": email, "GroupName": group}),
            )
            .await;
        }
        User {
            email: email.to_owned(),
            sub,
        }
    }

    /// Signs `user` in: its ID token and access token.
    async fn sign_in(&self, user: &User) -> (String, String) {
        let answer = call(
            &self.http,
            &self.endpoint,
            "InitiateAuth",
            json!({
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": self.client_id,
                "AuthParameters": {"USERNAME": user.email, "PASSWORD": PASSWORD},
            }),
        )
        .await;
        let result = &answer["AuthenticationResult"];
        (text(&result["IdToken"]), text(&result["AccessToken"]))
    }
}

/// One Cognito API call, as the SDK makes it (JSON 1.1 over POST).
async fn call(http: &reqwest::Client, endpoint: &str, action: &str, body: Value) -> Value {
    let response = http
        .post(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{action}"),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_owned()
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
    let pool = Pool::create("tally-verify").await;
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

    let id = pool.verifier(TokenUse::Id);
    let access = pool.verifier(TokenUse::Access);
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
            ..pool.config(token_use)
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
    let other_pool = Pool::create("tally-other").await;
    assert_eq!(
        other_pool.verifier(TokenUse::Id).verify(&id_token).await,
        Err(AuthError::InvalidClaims("wrong issuer"))
    );
}

#[tokio::test]
async fn cognito_local_tokens_through_the_router() {
    let pool = Pool::create("tally-router").await;
    let ledger = Ledger::new().await;
    let router = ledger.router(Arc::new(pool.verifier(TokenUse::Id)));
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
