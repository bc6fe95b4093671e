//! The HTTP API as a Lambda function behind API Gateway: the axum `Router`
//! `tally serve` serves, over the DynamoDB adapters, through `lambda_http`
//! (REST APIs, whose paths carry the stage unless
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set, and HTTP APIs).
//!
//! A cold start connects and reads one item, the generation pointer; the
//! command side loads the stream heads each command needs, so nothing is
//! folded at start whatever the log's length. Each cold start and each
//! request logs the DynamoDB calls it made (`store_calls`).
//!
//! Who is calling: when API Gateway's Cognito authorizer has validated the
//! token, its claims come in the request context (REST: `authorizer.claims`;
//! HTTP API: `authorizer.jwt.claims`) and are mapped to the caller, with
//! the same role rules as a token; otherwise the bearer token is verified
//! here against the user pool (`TALLY_COGNITO_ISSUER`,
//! `TALLY_COGNITO_CLIENT_ID`, `TALLY_COGNITO_TOKEN_USE`: `id`, the default,
//! or `access`).

use std::sync::Arc;

use command_api::auth::{
    Authenticated, CognitoConfig, CognitoVerifier, TokenUse, principal_from_authorizer,
};
use command_api::http::{self, App};
use command_api::service::CommandService;
use lambda_http::{Request, RequestExt as _, service_fn};
use ledger_store::views::AnyTable;
use serde_json::{Map, Value};
use tower::ServiceExt as _;

use crate::{Calls, Error, GENERATION_MAX_AGE, connect_command_side, init, required_env};

/// The user pool's settings, from the function's environment.
///
/// # Errors
/// Naming a missing variable or a `token_use` other than `id` or `access`.
pub fn cognito_from_env() -> Result<CognitoConfig, Error> {
    let token_use = match std::env::var("TALLY_COGNITO_TOKEN_USE").as_deref() {
        Err(_) | Ok("" | "id") => TokenUse::Id,
        Ok("access") => TokenUse::Access,
        Ok(other) => {
            return Err(format!(
                "TALLY_COGNITO_TOKEN_USE is {other:?}: it must be `id` or `access`"
            )
            .into());
        }
    };
    Ok(CognitoConfig {
        issuer: required_env("TALLY_COGNITO_ISSUER")?,
        client_id: required_env("TALLY_COGNITO_CLIENT_ID")?,
        token_use,
    })
}

/// The claims API Gateway's authorizer validated, as one map of strings.
pub fn authorizer_claims(request: &Request) -> Option<Map<String, Value>> {
    let authorizer = request.request_context_ref()?.authorizer()?;
    if let Some(jwt) = &authorizer.jwt
        && !jwt.claims.is_empty()
    {
        return Some(
            jwt.claims
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
    }
    match authorizer.fields.get("claims") {
        Some(Value::Object(claims)) if !claims.is_empty() => Some(claims.clone()),
        _ => None,
    }
}

/// The function's main: serves API Gateway's requests until the runtime
/// stops it.
///
/// # Errors
/// When the Lambda environment or the pool's settings are missing, the
/// tables cannot be reached, or the runtime fails.
pub async fn run() -> Result<(), Error> {
    init()?;
    let cold = Calls::start();
    let verifier = CognitoVerifier::new(cognito_from_env()?)
        .map_err(|e| format!("the user pool's settings: {e}"))?;
    let (store, generations) = connect_command_side().await?;
    let report = generations.clone();
    let app = Arc::new(App {
        service: CommandService::new(store),
        views: AnyTable::LiveDynamo(generations.read.clone()),
        verifier: Arc::new(verifier),
        projections: Arc::new(
            move || serde_json::json!({"read_model_generation": report.generations().read}),
        ),
    });
    let router = http::router(app);
    tracing::info!(store_calls = cold.made(), "cold start");
    lambda_http::run(service_fn(move |mut request: Request| {
        let router = router.clone();
        let generations = generations.clone();
        async move {
            let calls = Calls::start();
            if let Err(e) = generations.refresh_if_older(GENERATION_MAX_AGE).await {
                tracing::warn!(error = %e, "reading the generation pointer failed");
            }
            if let Some(claims) = authorizer_claims(&request) {
                match principal_from_authorizer(&claims) {
                    Ok(principal) => {
                        request.extensions_mut().insert(Authenticated(principal));
                    }
                    // The bearer token is verified here instead, and the
                    // same rules refuse it.
                    Err(e) => tracing::warn!(error = %e, "the authorizer's claims name no caller"),
                }
            }
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let response = router.oneshot(request).await?;
            tracing::info!(
                %method,
                path,
                status = response.status().as_u16(),
                store_calls = calls.made(),
                "request"
            );
            Ok::<_, Error>(response)
        }
    }))
    .await
}
