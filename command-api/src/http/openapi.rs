//! The OpenAPI 3.1 document, built from the route table.
//!
//! Request bodies and query parameters are described by the same types the
//! handlers parse (their `schemars` schemas), so the document states exactly
//! what the server accepts.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Value, json};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One route's documentation.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub roles: &'static [&'static str],
    body: Option<SchemaFn>,
    query: Option<SchemaFn>,
    /// Whether the route takes the `Idempotency-Key` header: every write
    /// does, except one whose body carries a key per item.
    keyed: bool,
}

pub fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    roles: &'static [&'static str],
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        roles,
        body: None,
        query: None,
        keyed: method != "GET",
    }
}

impl RouteDoc {
    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(|g| g.subschema_for::<T>());
        self
    }

    pub fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(|g| g.root_schema_for::<T>());
        self
    }

    /// A write whose items each carry their own idempotency key in the
    /// body, instead of one `Idempotency-Key` header for the request.
    pub fn keys_per_item(mut self) -> Self {
        self.keyed = false;
        self
    }

    fn is_write(&self) -> bool {
        self.method != "GET"
    }

    fn operation(&self, generator: &mut SchemaGenerator) -> Value {
        let mut parameters: Vec<Value> = path_params(self.path)
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(query) = self.query {
            let schema = query(generator).to_value();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    parameters.push(json!({
                        "name": name,
                        "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": prop,
                    }));
                }
            }
        }
        if self.keyed {
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": true,
                "description": "The client's key for this command: a repeat with the same request returns the original result and writes nothing; with a different request it is refused (idempotency_key_reused).",
                "schema": {"type": "string", "minLength": 1, "maxLength": ledger_store::IDEMPOTENCY_KEY_LEN_MAX},
            }));
        }
        let mut op = json!({
            "summary": self.summary,
            "operationId": operation_id(self.method, self.path),
            "parameters": parameters,
            "responses": responses(self),
        });
        if !self.roles.is_empty() {
            op["security"] = json!([{"bearer": []}]);
            op["x-roles"] = json!(self.roles);
        }
        if let Some(schema) = self.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema(generator).to_value()}},
            });
        }
        op
    }
}

fn responses(route: &RouteDoc) -> Value {
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let mut r = serde_json::Map::new();
    let ok = if route.method == "POST"
        && !route.path.ends_with("/batch")
        && !route.path.ends_with("/replenishments")
    {
        "201"
    } else {
        "200"
    };
    let mut success = json!({"description": "Success."});
    if route.is_write() {
        success["description"] = "Success. A write that appended events names them in the Tally-Consistency-Token header; pass it as consistency_token to a read that must reflect them.".into();
        success["headers"] = json!({
            "Tally-Consistency-Token": {
                "description": "Opaque; names the stream versions this write appended. Absent when it appended none.",
                "schema": {"type": "string"},
            }
        });
    }
    r.insert(ok.into(), success);
    r.insert(
        "400".into(),
        json!({"description": "validation_failed or limit_exceeded", "content": problem}),
    );
    if !route.roles.is_empty() {
        r.insert(
            "401".into(),
            json!({"description": "unauthorized", "content": problem}),
        );
        r.insert(
            "403".into(),
            json!({"description": "forbidden", "content": problem}),
        );
        r.insert(
            "404".into(),
            json!({"description": "not_found (another tenant's ids too)", "content": problem}),
        );
    }
    if route.body.is_some() {
        r.insert(
            "413".into(),
            json!({"description": "payload_too_large: the body is over the route's limit", "content": problem}),
        );
        r.insert(
            "415".into(),
            json!({"description": "unsupported_media_type: the body is not application/json", "content": problem}),
        );
    }
    if route.is_write() {
        r.insert("409".into(), json!({"description": "a state conflict (e.g. order_exists, conflict)", "content": problem}));
        r.insert("422".into(), json!({"description": "a rule refused the command (e.g. insufficient_credit, refund_exceeds_remaining, idempotency_key_reused)", "content": problem}));
        r.insert("503".into(), json!({"description": "unavailable: the store failed, or the user pool's signing keys could not be fetched, retry with the same key; not_yet_visible: a replenishment's consistency_token was not projected in time", "content": problem}));
    } else if !route.roles.is_empty() {
        r.insert("503".into(), json!({"description": "not_yet_visible: the writes consistency_token names were not projected in time (a named limit, READ_WAIT_MAX: 5 s); unavailable: the store failed, or the user pool's signing keys could not be fetched", "content": problem}));
    }
    Value::Object(r)
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.push_str(
            seg.trim_matches(|c| c == '{' || c == '}')
                .replace(['.', '-'], "_")
                .as_str(),
        );
    }
    id
}

/// The whole document.
pub struct Doc {
    routes: Vec<RouteDoc>,
}

impl Doc {
    pub fn new(routes: Vec<RouteDoc>) -> Self {
        Self { routes }
    }

    pub fn to_json(&self) -> Value {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
        });
        let mut generator = SchemaGenerator::new(settings);
        let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
        for route in &self.routes {
            let op = route.operation(&mut generator);
            paths
                .entry(route.path)
                .or_default()
                .insert(route.method.to_ascii_lowercase(), op);
        }
        // Registers the Problem definition the responses refer to.
        generator.subschema_for::<super::problem::Problem>();
        let schemas = generator.take_definitions(true);
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Tally",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Event-sourced ledger for multi-tenant point of sale. Every write needs an Idempotency-Key header (an offline batch carries one per sale instead) and answers with a Tally-Consistency-Token header naming the stream versions it appended. Reads answer from read models that may lag writes by a moment; a client that must see its own write passes consistency_token=<that token>, and the read waits (at most 5 s, then 503 not_yet_visible) until those versions are projected. A token is bound to its tenant; any other is 400 validation_failed. Amounts are decimal strings in the tenant's currency. Errors are application/problem+json with a stable code.",
            },
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
                "schemas": schemas,
            },
            "paths": paths,
        })
    }
}
