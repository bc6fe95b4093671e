//! A user pool on cognito-local, the Cognito emulator (`Kind::Cognito`):
//! created, filled and signed in to through the Cognito API as the SDK
//! calls it (JSON 1.1 over POST), so tests verify tokens of a real RS256
//! issuer against the JWKS it serves.
//!
//! cognito-local signs with a key that ships in its npm package: anyone
//! can forge its tokens, so they prove the verifier's path, never a trust.

use serde_json::{Value, json};

use crate::emulator::{Emulator, Kind};

/// Every user's password.
pub const PASSWORD: &str = "Correct-Horse-9";

/// The groups a pool is created with: Tally's five roles, and one it does
/// not know.
pub const GROUPS: [&str; 6] = [
    "Admin", "Vendor", "Cashier", "Employee", "Service", "Support",
];

/// A user pool of cognito-local, with its app client.
pub struct UserPool {
    http: reqwest::Client,
    endpoint: String,
    pub id: String,
    pub client_id: String,
}

/// One user as the pool holds it.
pub struct User {
    pub email: String,
    pub sub: String,
}

impl UserPool {
    /// A new pool named `name` on the process's cognito-local, with the
    /// custom attributes `tenant_id`, `vendor_id`, `employee_id`, an app
    /// client allowing `USER_PASSWORD_AUTH`, and [`GROUPS`].
    pub async fn create(name: &str) -> UserPool {
        let endpoint = tokio::task::spawn_blocking(|| Emulator::shared(Kind::Cognito).endpoint())
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
        let pool = UserPool {
            http,
            endpoint,
            id,
            client_id,
        };
        for group in GROUPS {
            pool.call("CreateGroup", json!({"GroupName": group})).await;
        }
        pool
    }

    /// The pool's issuer, its tokens' `iss`.
    pub fn issuer(&self) -> String {
        format!("{}/{}", self.endpoint, self.id)
    }

    /// An action on this pool.
    pub async fn call(&self, action: &str, mut body: Value) -> Value {
        body["UserPoolId"] = json!(self.id);
        call(&self.http, &self.endpoint, action, body).await
    }

    /// A confirmed user named by `email`, in `groups`, with custom
    /// attributes `custom` (`tenant_id`, `vendor_id`, `employee_id`).
    pub async fn user(&self, email: &str, groups: &[&str], custom: &[(&str, &str)]) -> User {
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
    pub async fn sign_in(&self, user: &User) -> (String, String) {
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
