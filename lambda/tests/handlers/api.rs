//! `tally-api` behind both API Gateway flavours: requests shaped as the
//! committed fixtures (a REST API proxy event with its Cognito
//! authorizer's claims, and an HTTP API event with its JWT authorizer's),
//! through the real binary, on DynamoDB Local, with the stream projector
//! running in this process so reads see the writes.

use aws_local::cognito::UserPool;
use serde_json::{Map, Value, json};

use crate::runtime::{Function, Outcome, RuntimeApi, event_items, fixture, project, tables};

const API_BIN: &str = env!("CARGO_BIN_EXE_tally-api");
/// The fixtures' tenant and vendor.
const TENANT: &str = "canteen";
const VENDOR: &str = "V1";
const ORDER: &str = "O-1001";

/// The function's own configuration: a user pool that is never asked (the
/// authorizer's claims name the caller; a request without them has its
/// token verified against an issuer nothing listens on).
fn api_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "TALLY_COGNITO_ISSUER",
            "http://127.0.0.1:9/us-east-1_Unused".to_owned(),
        ),
        (
            "TALLY_COGNITO_CLIENT_ID",
            "5r2c0t3k4l1n9m8b7v6x5z4q3".to_owned(),
        ),
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".to_owned()),
    ]
}

/// Claims as an authorizer hands them over: every value a string, the
/// groups as `[A B]`.
fn claims(tenant: &str, sub: &str, groups: &str, vendor: Option<&str>) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(sub));
    claims.insert("cognito:username".into(), json!(sub));
    claims.insert("cognito:groups".into(), json!(groups));
    claims.insert("custom:tenant_id".into(), json!(tenant));
    claims.insert("token_use".into(), json!("id"));
    claims.insert(
        "iss".into(),
        json!("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEfGhI"),
    );
    if let Some(vendor) = vendor {
        claims.insert("custom:vendor_id".into(), json!(vendor));
    }
    claims
}

fn admin(tenant: &str) -> Map<String, Value> {
    claims(tenant, &format!("admin-of-{tenant}"), "[Admin]", None)
}

/// One request of the test, in gateway-neutral terms.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<(&'a str, String)>,
    key: Option<&'a str>,
    body: Option<Value>,
    /// The authorizer's claims; `None` for a request that reached the
    /// function without an authorizer.
    claims: Option<Map<String, Value>>,
    /// An `Authorization: Bearer` token.
    bearer: Option<String>,
}

impl<'a> Call<'a> {
    fn new(method: &'a str, path: &'a str, claims: Map<String, Value>) -> Call<'a> {
        Call {
            method,
            path,
            query: None,
            key: None,
            body: None,
            claims: Some(claims),
            bearer: None,
        }
    }

    /// A request that reached the function without an authorizer, with
    /// `token` as its bearer token.
    fn bearer(method: &'a str, path: &'a str, token: &str) -> Call<'a> {
        Call {
            claims: None,
            bearer: Some(token.to_owned()),
            ..Call::new(method, path, Map::new())
        }
    }

    fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn query(mut self, name: &'a str, value: String) -> Self {
        self.query = Some((name, value));
        self
    }

    /// The REST API's proxy event: the fixture with this call's method,
    /// path (the stage in `requestContext.path`), headers and claims.
    fn rest(&self) -> Value {
        let mut event = fixture("apigw-rest-request.json");
        event["httpMethod"] = json!(self.method);
        event["path"] = json!(self.path);
        event["pathParameters"] = json!({"proxy": &self.path[1..]});
        event["requestContext"]["httpMethod"] = json!(self.method);
        event["requestContext"]["path"] = json!(format!("/prod{}", self.path));
        for headers in ["headers", "multiValueHeaders"] {
            let headers = event[headers].as_object_mut().unwrap();
            headers.remove("Idempotency-Key");
            headers.remove("Authorization");
        }
        if let Some(key) = self.key {
            event["headers"]["Idempotency-Key"] = json!(key);
            event["multiValueHeaders"]["Idempotency-Key"] = json!([key]);
        }
        if let Some(token) = &self.bearer {
            event["headers"]["Authorization"] = json!(format!("Bearer {token}"));
            event["multiValueHeaders"]["Authorization"] = json!([format!("Bearer {token}")]);
        }
        if let Some((name, value)) = &self.query {
            event["queryStringParameters"] = json!({ *name: value });
            event["multiValueQueryStringParameters"] = json!({ *name: [value] });
        }
        event["body"] = self
            .body
            .as_ref()
            .map_or(Value::Null, |b| json!(b.to_string()));
        match &self.claims {
            Some(claims) => event["requestContext"]["authorizer"] = json!({"claims": claims}),
            None => {
                event["requestContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorizer");
            }
        }
        event
    }

    /// The HTTP API's event: the fixture with this call's method, path,
    /// headers and JWT claims.
    fn http(&self) -> Value {
        let mut event = fixture("apigw-http-request.json");
        event["rawPath"] = json!(self.path);
        event["requestContext"]["http"]["method"] = json!(self.method);
        event["requestContext"]["http"]["path"] = json!(self.path);
        event["pathParameters"] = json!({"proxy": &self.path[1..]});
        let headers = event["headers"].as_object_mut().unwrap();
        headers.remove("idempotency-key");
        headers.remove("authorization");
        headers.remove("content-length");
        if let Some(key) = self.key {
            event["headers"]["idempotency-key"] = json!(key);
        }
        if let Some(token) = &self.bearer {
            event["headers"]["authorization"] = json!(format!("Bearer {token}"));
        }
        event["rawQueryString"] = json!(
            self.query
                .as_ref()
                .map_or(String::new(), |(name, value)| format!("{name}={value}"))
        );
        if let Some((name, value)) = &self.query {
            event["queryStringParameters"] = json!({ *name: value });
        }
        event["body"] = self
            .body
            .as_ref()
            .map_or(Value::Null, |b| json!(b.to_string()));
        match &self.claims {
            Some(claims) => {
                event["requestContext"]["authorizer"] =
                    json!({"jwt": {"claims": claims, "scopes": null}});
            }
            None => {
                event["requestContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorizer");
            }
        }
        event
    }
}

/// What the function answered API Gateway: status, headers and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Value,
    body: Value,
}

fn reply(outcome: Outcome) -> Reply {
    let Outcome::Response(response) = outcome else {
        panic!("the API function failed instead of answering: {outcome:?}");
    };
    let status = response["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode in {response}")) as u16;
    let body = match response["body"].as_str() {
        Some("") | None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")),
    };
    Reply {
        status,
        headers: response["headers"].clone(),
        body,
    }
}

async fn send(api: &RuntimeApi, function: &mut Function, event: &Value) -> Reply {
    reply(api.invoke(function, event).await.1)
}

fn consistency_token(reply: &Reply) -> String {
    reply.headers["tally-consistency-token"]
        .as_str()
        .unwrap_or_else(|| panic!("no consistency token in {reply:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_function_serves_both_gateway_flavours_from_authorizer_claims() {
    let (config, _) = tables("lambda-api").await;
    let projection = project(&config).await;
    let api = RuntimeApi::start().await;
    let spawned = std::time::Instant::now();
    let mut function = Function::start(API_BIN, &api, &config, &api_env());
    while api.next_calls() == 0 && spawned.elapsed() < crate::runtime::INVOCATION_TIMEOUT {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // For the record: a cold start, from the process's start to its first
    // request for work (Lambda's "Init Duration"), on DynamoDB Local.
    println!(
        "cold start: {:?} to the first invocation request",
        spawned.elapsed()
    );

    // REST API, stage in the path: the tenant, then the fixture's own
    // request as recorded (register V1).
    let r = send(
        &api,
        &mut function,
        &Call::new("PUT", "/v1/tenant", admin(TENANT))
            .key("configure")
            .body(json!({"currency": "PHP", "time_zone": "Asia/Manila"}))
            .rest(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = send(&api, &mut function, &fixture("apigw-rest-request.json")).await;
    assert_eq!(r.status, 201, "{r:?}");

    // HTTP API: the fixture's own checkout, by V1's cashier.
    let sale = send(&api, &mut function, &fixture("apigw-http-request.json")).await;
    assert_eq!(sale.status, 201, "{sale:?}");
    let token = consistency_token(&sale);

    // The order, read from the read models once projected.
    let order_path = format!("/v1/orders/{ORDER}");
    let read =
        Call::new("GET", &order_path, admin(TENANT)).query("consistency_token", token.clone());
    for event in [read.http(), read.rest()] {
        let r = send(&api, &mut function, &event).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["order_id"], ORDER, "{r:?}");
        assert_eq!(r.body["vendor_id"], VENDOR, "{r:?}");
        assert_eq!(r.body["status"], "paid", "{r:?}");
    }

    // Refusals write nothing.
    let before = event_items(&config).await;
    let other_tenant = Call::new("GET", &order_path, admin("market"));
    let r = send(&api, &mut function, &other_tenant.http()).await;
    assert_eq!(
        r.status, 404,
        "another tenant's admin must not see the order: {r:?}"
    );
    let service = claims(TENANT, "scheduler", "[Service]", None);
    let register = Call::new("POST", "/v1/vendors", service)
        .key("register-v2")
        .body(json!({"vendor_id": "V2", "name": "Grill", "commission_rate": 1000}));
    let r = send(&api, &mut function, &register.rest()).await;
    assert_eq!(
        r.status, 403,
        "a Service caller must not register vendors: {r:?}"
    );
    assert_eq!(r.body["code"], "forbidden", "{r:?}");
    let two_groups = claims(TENANT, "owner", "[Vendor Cashier]", Some("V1"));
    let register = Call::new("POST", "/v1/vendors", two_groups)
        .key("register-v3")
        .body(json!({"vendor_id": "V3", "name": "Juice", "commission_rate": 1000}));
    let r = send(&api, &mut function, &register.http()).await;
    assert_eq!(
        r.status, 403,
        "a vendor and cashier must not register vendors: {r:?}"
    );
    let no_tenant = {
        let mut c = admin(TENANT);
        c.remove("custom:tenant_id");
        c
    };
    let mut anonymous = Call::new("POST", "/v1/vendors", no_tenant)
        .key("register-v4")
        .body(json!({"vendor_id": "V4", "name": "Tea", "commission_rate": 1000}));
    let r = send(&api, &mut function, &anonymous.rest()).await;
    assert_eq!(
        r.status, 401,
        "claims without a tenant name no caller: {r:?}"
    );
    anonymous.claims = None;
    for event in [anonymous.rest(), anonymous.http()] {
        let r = send(&api, &mut function, &event).await;
        assert_eq!(r.status, 401, "no authorizer and no token: {r:?}");
        assert_eq!(r.body["code"], "unauthorized", "{r:?}");
    }
    assert_eq!(
        event_items(&config).await,
        before,
        "a refused request must write nothing"
    );

    // One log line per invocation with its DynamoDB calls; the cold start
    // connected and read the generation pointer, nothing more.
    let invocations = api.next_calls() - 1;
    let printed = function.stop();
    projection.stop().await;
    let lines: Vec<Value> = printed
        .stdout
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let fields = |l: &Value| l["fields"].clone();
    let cold: Vec<Value> = lines
        .iter()
        .map(fields)
        .filter(|f| f["message"] == "cold start")
        .collect();
    assert_eq!(cold.len(), 1, "one cold start: {lines:?}");
    assert_eq!(
        cold[0]["store_calls"], 2,
        "a cold start makes two calls (DescribeTable, the generation pointer): {cold:?}"
    );
    let requests: Vec<Value> = lines
        .iter()
        .map(fields)
        .filter(|f| f["message"] == "request")
        .collect();
    assert_eq!(requests.len() as u64, invocations, "{lines:?}");
    assert!(
        requests.iter().all(|r| r["store_calls"].as_u64().is_some()),
        "every request line reports its store calls: {requests:?}"
    );
    // The figures, for the record (never asserted beyond the bounds above).
    for r in &requests {
        println!(
            "{} {} -> {}: {} DynamoDB calls",
            r["method"].as_str().unwrap_or_default(),
            r["path"].as_str().unwrap_or_default(),
            r["status"],
            r["store_calls"]
        );
    }
    let sale_line = requests
        .iter()
        .find(|r| r["path"] == "/v1/sales")
        .expect("the checkout's line");
    assert!(
        sale_line["store_calls"].as_u64().unwrap() >= 1,
        "a checkout appends: {sale_line:?}"
    );
}

#[test]
fn without_the_user_pool_the_api_function_exits_naming_it() {
    let config = ledger_store::dynamodb::DynamoConfig {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        table_prefix: "unused-".to_owned(),
    };
    let mut env = crate::runtime::lambda_env("tally-api", None, &config);
    env.push(("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9".to_owned()));
    let function = Function::spawn(API_BIN, &env);
    let (status, printed) = function.wait(crate::runtime::EXIT_WAIT_MAX);
    let status = status.expect("the function exits by itself");
    assert!(!status.success(), "{printed:?}");
    let all = [printed.stdout.join("\n"), printed.stderr.join("\n")].join("\n");
    assert!(
        all.contains("TALLY_COGNITO_ISSUER is not set"),
        "the reason names the variable: {all}"
    );
}

/// The ID token of an admin of [`TENANT`] in `pool`.
async fn admin_token(pool: &UserPool) -> String {
    let admin = pool
        .user(
            "admin@canteen.example",
            &["Admin"],
            &[("tenant_id", TENANT)],
        )
        .await;
    pool.sign_in(&admin).await.0
}

/// Behind an API without an authorizer, the function verifies the bearer
/// token itself against the user pool: a real one, on cognito-local, whose
/// JWKS it fetches. A valid ID token acts; the same token altered, or one
/// of another pool, is refused and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_function_verifies_user_pool_tokens_itself_without_an_authorizer() {
    let (config, _) = tables("lambda-api-jwt").await;
    let pool = UserPool::create("tally-lambda").await;
    let token = admin_token(&pool).await;
    let foreign = admin_token(&UserPool::create("tally-lambda-other").await).await;
    let api = RuntimeApi::start().await;
    let env = vec![
        ("TALLY_COGNITO_ISSUER", pool.issuer()),
        ("TALLY_COGNITO_CLIENT_ID", pool.client_id.clone()),
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".to_owned()),
    ];
    let mut function = Function::start(API_BIN, &api, &config, &env);

    let configure = |token: &str, key: &'static str| {
        Call::bearer("PUT", "/v1/tenant", token)
            .key(key)
            .body(json!({"currency": "PHP", "time_zone": "Asia/Manila"}))
    };
    let altered = {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let last = parts[2].pop().expect("a signature");
        parts[2].push(if last == 'A' { 'B' } else { 'A' });
        parts.join(".")
    };
    for (refused, key) in [(altered.as_str(), "altered"), (foreign.as_str(), "foreign")] {
        for event in [
            configure(refused, key).rest(),
            configure(refused, key).http(),
        ] {
            let r = send(&api, &mut function, &event).await;
            assert_eq!(r.status, 401, "{key}: {r:?}");
            assert_eq!(r.body["code"], "unauthorized", "{key}: {r:?}");
        }
    }
    assert_eq!(
        event_items(&config).await,
        0,
        "a refused token writes nothing"
    );
    let r = send(&api, &mut function, &configure(&token, "configure").http()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = send(&api, &mut function, &configure(&token, "configure").rest()).await;
    assert_eq!(r.status, 200, "the same key answers again: {r:?}");
    assert!(event_items(&config).await > 0, "the admin's write landed");
    function.stop();
}
