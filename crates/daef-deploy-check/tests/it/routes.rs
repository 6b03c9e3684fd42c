//! docs/openapi.yaml against the router: the same (method, path) pairs, the same `Allow` sets,
//! and security exactly where the router asks for a scope.

use std::collections::{BTreeMap, BTreeSet};

use daef_deploy_check::assets::workspace_root;
use daef_deploy_check::openapi::{self, Operation};
use daef_deploy_check::routes::{RouteDoc, documented_routes};
use daef_deploy_check::yaml;
use daef_http::route::{Route, RouteError};
use hyper::Method;

fn spec_operations() -> Vec<Operation> {
    let doc =
        yaml::load_one(&workspace_root().join("docs/openapi.yaml")).expect("docs/openapi.yaml");
    assert_eq!(
        doc["openapi"].as_str().map(|v| &v[..4]),
        Some("3.1."),
        "OpenAPI 3.1"
    );
    openapi::operations(&doc).expect("operations")
}

fn router_routes() -> Vec<RouteDoc> {
    let path = workspace_root().join("crates/daef-http/src/route.rs");
    let source = std::fs::read_to_string(&path).expect("route.rs");
    let routes = documented_routes(&source).expect("the route table");
    assert!(
        routes.len() >= 17,
        "only {} routes read from route.rs",
        routes.len()
    );
    routes
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("a method")
}

/// The route a request line resolves to, checked to come back with the same template.
#[track_caller]
fn parse(method_name: &str, template: &str) -> Route {
    let path = openapi::instantiate(template, "id-1");
    let route = Route::parse(&method(method_name), &path)
        .unwrap_or_else(|e| panic!("{method_name} {path} is not routed: {e:?}"));
    assert_eq!(
        route.template(),
        template,
        "{method_name} {path} routes to {route:?}"
    );
    route
}

#[test]
fn every_route_is_described_and_every_description_is_routed() {
    let documented: BTreeSet<(String, String)> = router_routes()
        .into_iter()
        .map(|r| {
            // The doc comment must tell the truth about the variant it sits on.
            let route = parse(&r.method, &r.path);
            let variant = format!("{route:?}");
            assert!(
                variant.starts_with(&r.variant),
                "`{} {}` is documented on {} but routes to {variant}",
                r.method,
                r.path,
                r.variant
            );
            (r.method, r.path)
        })
        .collect();
    let described: BTreeSet<(String, String)> = spec_operations()
        .into_iter()
        .map(|o| (o.method, o.path))
        .collect();
    for (m, p) in &described {
        parse(m, p);
    }
    let undescribed: Vec<_> = documented.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&documented).collect();
    assert!(
        undescribed.is_empty(),
        "routes missing from docs/openapi.yaml: {undescribed:?}"
    );
    assert!(
        unrouted.is_empty(),
        "docs/openapi.yaml describes what the router does not route: {unrouted:?}"
    );
}

#[test]
fn each_path_allows_exactly_the_described_methods() {
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for op in spec_operations() {
        by_path.entry(op.path).or_default().insert(op.method);
    }
    for (path, methods) in by_path {
        // No route uses PATCH, so it is refused with the path's `Allow` list.
        let concrete = openapi::instantiate(&path, "id-1");
        match Route::parse(&Method::PATCH, &concrete) {
            Err(RouteError::MethodNotAllowed(allow)) => {
                let allowed: BTreeSet<String> =
                    allow.split(',').map(|m| m.trim().to_owned()).collect();
                assert_eq!(allowed, methods, "Allow of {path}");
            }
            other => panic!("PATCH {concrete}: expected 405, got {other:?}"),
        }
    }
}

#[test]
fn security_and_error_statuses_match_the_router() {
    for op in spec_operations() {
        let route = parse(&op.method, &op.path);
        let needs_token = route.requirements().is_some();
        let label = format!("{} {}", op.method, op.path);
        assert_eq!(
            op.secured, needs_token,
            "{label}: security in docs/openapi.yaml vs Route::requirements"
        );
        assert!(op.operation_id.is_some(), "{label} has no operationId");
        assert!(
            op.statuses.iter().any(|s| s.starts_with('2')),
            "{label} documents no success status"
        );
        if needs_token {
            for status in ["401", "403"] {
                assert!(
                    op.statuses.iter().any(|s| s == status),
                    "{label} does not document {status}"
                );
            }
        }
    }
}

#[test]
fn request_bodies_document_their_errors() {
    let doc =
        yaml::load_one(&workspace_root().join("docs/openapi.yaml")).expect("docs/openapi.yaml");
    for op in spec_operations() {
        let operation = &doc["paths"][&op.path][op.method.to_ascii_lowercase()];
        if operation.get("requestBody").is_some() {
            for status in ["400", "413"] {
                assert!(
                    op.statuses.iter().any(|s| s == status),
                    "{} {} takes a body but does not document {status}",
                    op.method,
                    op.path
                );
            }
        }
    }
}
