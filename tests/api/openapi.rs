//! Drift test for the committed OpenAPI document `schemas/openapi.json`.
//!
//! The document is generated from the route table that also builds the
//! router; the committed copy is the published contract for clients. This
//! test fails whenever the served document and the committed one disagree,
//! so an API change cannot slip through without its document being
//! reviewed and committed; and it checks that every documented route is
//! served.
//!
//! Regenerate with `TALLY_BLESS=1 cargo test --test api openapi`.

use std::path::{Path, PathBuf};

use ledger_store::sqlite::SqliteStore;
use reqwest::Method;
use serde_json::Value;

use crate::harness::*;

on_both_stores! {
    the_served_document_is_the_committed_one,
    every_documented_route_is_served,
    documented_page_sizes_are_enforced,
}

const BLESS_HINT: &str = "regenerate with `TALLY_BLESS=1 cargo test --test api openapi`, \
                          review the diff and commit it";

fn blessing() -> bool {
    std::env::var("TALLY_BLESS").is_ok_and(|v| v == "1")
}

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/openapi.json")
}

/// The document as committed: pretty-printed, with a trailing newline.
fn generated() -> String {
    let document = command_api::http::document::<SqliteStore>();
    let mut text = serde_json::to_string_pretty(&document).expect("the document encodes");
    text.push('\n');
    text
}

async fn the_served_document_is_the_committed_one(store: Backend) {
    let text = generated();
    let file = committed_path();
    let committed = std::fs::read_to_string(&file).ok();
    if committed.as_deref() != Some(text.as_str()) {
        if blessing() {
            std::fs::write(&file, &text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        } else if committed.is_none() {
            panic!("schemas/openapi.json is missing\n{BLESS_HINT}");
        } else {
            panic!(
                "schemas/openapi.json differs from what the route table generates\n{BLESS_HINT}"
            );
        }
    }

    let api = Api::empty(store).await;
    let served = ok(api.anonymous(Method::GET, "/openapi.json"), 200).await;
    let expected: Value = serde_json::from_str(&text).expect("the committed document parses");
    assert!(
        served.body == expected,
        "the served /openapi.json is not schemas/openapi.json\n{BLESS_HINT}"
    );
    api.stop().await;
}

async fn every_documented_route_is_served(store: Backend) {
    let api = Api::empty(store).await;
    let document = ok(api.anonymous(Method::GET, "/openapi.json"), 200)
        .await
        .body;
    let paths = document["paths"].as_object().expect("paths");
    let admin = api.admin();
    let (mut operations, mut keyed) = (0, 0);
    for (template, methods) in paths {
        let path = template
            .replace("{kind}", "order")
            .replace("{id}", "X")
            .replace("{stream}", "order");
        assert!(
            !path.contains('{'),
            "an unknown path parameter in {template}"
        );
        for (method, operation) in methods.as_object().expect("operations") {
            operations += 1;
            let method: Method = method.to_uppercase().parse().expect("a method");
            let public = operation.get("security").is_none();
            let reply = send(api.anonymous(method.clone(), &path)).await;
            let status = reply.status.as_u16();
            if public {
                assert_eq!(status, 200, "{method} {template}: {reply:?}");
            } else {
                assert_eq!(status, 401, "{method} {template}: {reply:?}");
                assert_eq!(reply.body["code"], "unauthorized");
            }
            // A write wants the Idempotency-Key header exactly when the
            // document says so.
            if method == Method::GET {
                continue;
            }
            let documented = operation["parameters"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["required"] == true)
            });
            let reply = send(
                api.anonymous(method.clone(), &path)
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({})),
            )
            .await;
            assert_eq!(reply.status.as_u16(), 400, "{method} {template}: {reply:?}");
            let detail = reply.body["detail"].as_str().unwrap_or_default();
            assert_eq!(
                detail.contains("Idempotency-Key"),
                documented,
                "{method} {template}: {reply:?}"
            );
            keyed += usize::from(documented);
        }
    }
    assert_eq!(keyed, 9, "every write but the offline batch takes a key");
    // DOMAIN.md's API: 20 operations on 19 paths.
    assert_eq!(paths.len(), 19);
    assert_eq!(operations, 20);
    api.stop().await;
}

/// The page sizes the document states are the ones the server takes.
async fn documented_page_sizes_are_enforced(store: Backend) {
    let api = Api::start(store).await;
    let admin = api.admin();
    let document = ok(api.anonymous(Method::GET, "/openapi.json"), 200)
        .await
        .body;
    let mut checked = 0;
    for (template, methods) in document["paths"].as_object().expect("paths") {
        let Some(parameters) = methods["get"]["parameters"].as_array() else {
            continue;
        };
        let Some(limit) = parameters.iter().find(|p| p["name"] == "limit") else {
            continue;
        };
        let (min, max) = (
            limit["schema"]["minimum"].as_u64().expect("a minimum"),
            limit["schema"]["maximum"].as_u64().expect("a maximum"),
        );
        assert_eq!(min, 1, "{template}");
        let path = template
            .replace("{kind}", "tenant")
            .replace("{id}", if template.contains("{kind}") { T1 } else { E1 });
        let at = |n: u64| api.get(&admin, &format!("{path}?limit={n}"));
        ok(at(max), 200).await;
        check(at(max + 1), 400, "limit_exceeded").await;
        check(at(min - 1), 400, "validation_failed").await;
        checked += 1;
    }
    assert_eq!(
        checked, 4,
        "orders, statement, activity and stream events page"
    );
    api.stop().await;
}
