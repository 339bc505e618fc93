//! The gateway's OpenAPI 3 document, served at `GET /openapi.json`, and the route table it is
//! checked against.
//!
//! The document is generated with `utoipa` from the code: every handler carries a
//! `#[utoipa::path]` attribute (method, path, bodies, statuses) and the bodies derive
//! `ToSchema`. [`ApiDoc`] lists the handlers; [`Conventions`] adds what every route shares: the
//! bearer scheme, `{"error": string}` as the body of every error, and the statuses any route of
//! a kind can answer (401 and 503 where a token is checked, 503 where the auth service is
//! asked, 400 and 413 where a body is parsed, 400 where a name in the path is checked).
//!
//! Every route is registered through [`Routes`], so the tests below list the routes exactly as
//! `run` registers them ([`crate::routes`]) and fail when one is missing from the document
//! (or the document names one that is not served).
//!
//! The reply types here only describe JSON that handlers build with `json!`; the request
//! bodies and the replies that are Rust types (deliveries, ack outcomes, cluster views) are the
//! real types.

use crate::{api, auth_routes, permissions};
use actix_web::{http::Method, web, FromRequest, Handler, HttpResponse, Responder};
use mom_catalog::access::{Permission, ResourceKind};
use mom_common::rest::{Delivery, QueueDepth};
use mom_common::ExchangeKind;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

// ---- the route table ----

/// Where the gateway's routes go: the actix app ([`web::ServiceConfig`]) or, to compare them
/// with the document, a [`RouteList`]. A path is an actix pattern made of literal segments and
/// `{name}` segments only, which is also its OpenAPI form.
pub trait Routes {
    /// Serves `method` requests to `path` with `handler`.
    fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;
}

impl Routes for web::ServiceConfig {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(path, web::method(method).to(handler))
    }
}

/// One registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub method: Method,
    pub path: &'static str,
    /// The handler's Rust name, for messages.
    pub handler: &'static str,
}

/// The routes a registration function adds, in order.
#[derive(Debug, Default)]
pub struct RouteList(pub Vec<RouteEntry>);

impl RouteList {
    pub fn of(register: impl FnOnce(&mut RouteList)) -> RouteList {
        let mut list = RouteList::default();
        register(&mut list);
        list
    }
}

impl Routes for RouteList {
    fn add<F, Args>(&mut self, method: Method, path: &'static str, _: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.0.push(RouteEntry {
            method,
            path,
            handler: std::any::type_name::<F>(),
        });
        self
    }
}

// ---- the document ----

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MOM gateway REST API",
        description = "The REST API of MOM's gateway. Every error is `{\"error\": \"...\"}`. \
            Names (exchanges, queues, topics, subscribers, users) are 1-128 characters of \
            `[A-Za-z0-9._-]`, not only dots; routing keys are 0-255 characters of \
            `[A-Za-z0-9._*#-]`. What a user may do with an exchange, queue or topic is in \
            docs/security.md; docs/rest-api.md describes the semantics.",
    ),
    paths(
        crate::health,
        crate::version,
        crate::cluster_view,
        crate::metrics::render,
        serve,
        crate::stats::render,
        dashboard::page,
        dashboard::page_ui,
        dashboard::page_ui_slash,
        dashboard::file,
        auth_routes::register,
        auth_routes::login,
        auth_routes::whoami,
        auth_routes::refresh,
        auth_routes::revoke,
        auth_routes::list_users,
        auth_routes::create_user,
        auth_routes::delete_user,
        auth_routes::set_role,
        auth_routes::set_password,
        api::declare_exchange,
        api::list_exchanges,
        api::get_exchange,
        api::delete_exchange,
        api::bind,
        api::unbind,
        api::publish_to_exchange,
        api::declare_queue,
        api::list_queues,
        api::get_queue,
        api::delete_queue,
        api::pull_queue,
        api::ack_queue,
        crate::nack::nack_queue,
        api::stream_queue,
        api::declare_topic,
        api::list_topics,
        api::get_topic,
        api::delete_topic,
        api::publish_to_topic,
        api::publish_to_queue,
        api::subscribe,
        api::list_subscribers,
        api::unsubscribe,
        api::pull_subscription,
        api::ack_subscription,
        crate::nack::nack_subscription,
        api::stream_subscription,
        permissions::grant,
        permissions::list,
        permissions::revoke,
    ),
    // PullBody: a pull's body is optional, so its operations refer to it by name.
    components(schemas(ErrorBody, crate::mailboxes::PullBody)),
    modifiers(&Conventions),
    security(("bearer" = [])),
    tags(
        (name = "operations", description = "Health, version, cluster view, metrics, traffic counters, this document"),
        (name = "dashboard", description = "The web dashboard's page and files (crate::ui)"),
        (name = "auth", description = "Users and tokens; the gateway passes these to the auth service"),
        (name = "exchanges", description = "Exchanges, their bindings, and publishing to them"),
        (name = "queues", description = "Queues, and consuming from them"),
        (name = "topics", description = "Topics, their subscriptions, publishing and consuming"),
        (name = "permissions", description = "Grants of configure, write and read"),
    ),
)]
pub struct ApiDoc;

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";

/// What every route shares, added to the document after the handlers' own attributes.
pub struct Conventions;

fn error_response(description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".into(),
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    RefOr::T(response)
}

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A token from `POST /auth/login` (or `/auth/refresh`), as \
                         `Authorization: Bearer <token>`",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let secured = !is_public(operation);
                let has_body = operation.request_body.is_some();
                let has_path_params = path.contains('{');
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.into())
                        .or_insert_with(|| error_response(description));
                };
                if has_body || (has_path_params && secured) {
                    add(
                        "400",
                        "invalid request: unreadable JSON, a field out of range, or an invalid name",
                    );
                }
                if has_body {
                    add(
                        "413",
                        "the body is larger than the gateway's max_body_bytes (a publish: \
                         also a payload larger than 4194304 bytes)",
                    );
                }
                if secured {
                    add(
                        "401",
                        "missing, expired, forged or revoked token (its user deleted, its \
                         password reset since)",
                    );
                }
                if path.starts_with("/auth/") {
                    add("503", "the auth service cannot be reached");
                } else if secured {
                    add(
                        "503",
                        "ZooKeeper or the broker nodes cannot serve the request now; retry later",
                    );
                }
                // An error whose attribute gave only a description has the error body.
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        if status.as_str() >= "400" && response.content.is_empty() {
                            response.content.insert(
                                "application/json".into(),
                                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Whether an operation says it needs no token (`security(())` on its handler); the others
/// inherit the document's bearer requirement.
pub fn is_public(operation: &utoipa::openapi::path::Operation) -> bool {
    operation
        .security
        .as_ref()
        .is_some_and(|s| s.iter().any(|r| *r == SecurityRequirement::default()))
}

/// The document as served.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// `GET /openapi.json`: this document. It needs no state, and no token.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3 document of this API", body = Object, content_type = "application/json"),
    ),
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

/// The dashboard's routes ([`crate::ui`]): one handler serves the page at three paths, so
/// its descriptions are here, one per path.
pub mod dashboard {
    #[utoipa::path(
        get,
        path = "/",
        tag = "dashboard",
        security(()),
        responses((status = 200, description = "The dashboard's page", body = String, content_type = "text/html; charset=utf-8")),
    )]
    pub fn page() {}

    #[utoipa::path(
        get,
        path = "/ui",
        tag = "dashboard",
        security(()),
        responses((status = 200, description = "The dashboard's page", body = String, content_type = "text/html; charset=utf-8")),
    )]
    pub fn page_ui() {}

    #[utoipa::path(
        get,
        path = "/ui/",
        tag = "dashboard",
        security(()),
        responses((status = 200, description = "The dashboard's page", body = String, content_type = "text/html; charset=utf-8")),
    )]
    pub fn page_ui_slash() {}

    #[utoipa::path(
        get,
        path = "/ui/{file}",
        tag = "dashboard",
        security(()),
        params(("file" = String, Path, description = "`index.html`, `style.css` or a script")),
        responses(
            (status = 200, description = "The file", content(
                (String = "text/html; charset=utf-8"),
                (String = "text/css; charset=utf-8"),
                (String = "text/javascript; charset=utf-8"),
            )),
            (status = 404, description = "No such file"),
        ),
    )]
    pub fn file() {}
}

// ---- bodies that handlers build with `json!` ----

/// Every error: a status of 4xx or 5xx and this body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
}

#[derive(Serialize, ToSchema)]
pub struct ExchangeList {
    /// The exchanges the caller has some permission on.
    pub exchanges: Vec<Exchange>,
}

#[derive(Serialize, ToSchema)]
pub struct BindingItem {
    pub queue: String,
    pub routing_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExchangeDetail {
    pub name: String,
    pub kind: ExchangeKind,
    pub bindings: Vec<BindingItem>,
}

#[derive(Serialize, ToSchema)]
pub struct BindingReply {
    pub exchange: String,
    pub queue: String,
    pub routing_key: String,
}

/// What a publish's body may be, for its OpenAPI description.
pub const PUBLISH_BODY: &str = "JSON: one message or a batch. Each message has exactly one of \
    `payload` (text) and `payload_base64` (binary, standard base64), and optionally `headers` \
    and `content_type`. Or `Content-Type: application/octet-stream`: one message whose payload \
    is the body as is (at most 4194304 bytes), its routing key, `ttl_ms`, `mandatory` and \
    `message_id` in the query string, each header as an `X-Mom-Header-<name>: <value>` request \
    header (names arrive in lower case) and its content type as `X-Mom-Content-Type`.";

/// An octet-stream publish's body: the payload, byte for byte.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawPayload(pub Vec<u8>);

/// One message or a batch; a bare JSON array is refused (400).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PublishRequest {
    One(api::PublishBody),
    Batch(api::BatchBody),
}

/// A stored message.
#[derive(Serialize, ToSchema)]
pub struct Published {
    pub message_id: String,
    /// Queues (for an exchange) or subscribers (for a topic) that got a copy.
    pub routed: u32,
}

/// One message of a batch: stored, or why not.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Published(Published),
    Failed(ErrorBody),
}

#[derive(Serialize, ToSchema)]
pub struct BatchReply {
    /// Every message's outcome, in the order of the request.
    pub published: Vec<BatchItem>,
}

/// A single publish answers [`Published`], a batch [`BatchReply`].
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PublishReply {
    One(Published),
    Batch(BatchReply),
}

/// A batch none of whose messages was stored, or an error.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PublishUnavailable {
    Batch(BatchReply),
    Error(ErrorBody),
}

#[derive(Serialize, ToSchema)]
pub struct Named {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    /// The queues the caller has some permission on.
    pub queues: Vec<Named>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueDetail {
    pub name: String,
    #[serde(flatten)]
    pub depth: QueueDepth,
}

#[derive(Serialize, ToSchema)]
pub struct Messages {
    /// Up to `max` messages, leased to the caller for the visibility timeout; possibly none.
    pub messages: Vec<Delivery>,
}

#[derive(Serialize, ToSchema)]
pub struct TopicList {
    /// The topics the caller has some permission on.
    pub topics: Vec<Named>,
}

#[derive(Serialize, ToSchema)]
pub struct TopicDetail {
    pub name: String,
    /// How long every message is kept for new subscriptions (0: no history).
    pub retention_ms: u64,
    pub retained: Retained,
    pub subscribers: Vec<String>,
    /// Each subscription with its lag: messages not acked yet (ready or delivered).
    pub subscriptions: Vec<SubscriptionLag>,
}

#[derive(Serialize, ToSchema)]
pub struct Retained {
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// When the oldest retained message was published (ms since the Unix epoch); none if
    /// nothing is retained.
    pub oldest_published_at_ms: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionLag {
    pub subscriber: String,
    pub lag: u64,
    pub ready: u64,
    pub leased: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Subscription {
    pub topic: String,
    pub subscriber: String,
}

#[derive(Serialize, ToSchema)]
pub struct Subscribers {
    pub subscribers: Vec<String>,
}

/// A grant of permissions on the exchanges, queues or topics whose names match `pattern`.
#[derive(Serialize, ToSchema)]
pub struct GrantReply {
    pub id: String,
    pub user: String,
    pub kind: ResourceKind,
    /// A name, or a pattern with the wildcards `*` and `?`.
    pub pattern: String,
    pub permissions: Vec<Permission>,
    pub granted_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct GrantList {
    /// The grants the caller gave or got (all of them, for an admin).
    pub permissions: Vec<GrantReply>,
}

/// What `/health` says of the cluster.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every partition has a live leader and all its replicas in sync.
    Ok,
    /// Some partition has fewer in-sync replicas than replicas, but can take writes.
    Degraded,
    /// Some partition cannot take writes: no live leader, or fewer in-sync replicas than
    /// `min_insync_replicas` (503).
    Unavailable,
}

#[derive(Serialize, ToSchema)]
pub struct Version {
    /// Always `mom`.
    #[schema(example = "mom")]
    pub name: String,
    pub version: String,
    /// `host:port` of the gateway's gRPC service (`mom.v1.Consumer`, streaming consume), if
    /// it serves one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "127.0.0.1:8081")]
    pub grpc: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test as actix_test, App};
    use std::collections::BTreeSet;
    use utoipa::openapi::path::Operation;

    fn operation<'a>(
        doc: &'a utoipa::openapi::OpenApi,
        method: &Method,
        path: &str,
    ) -> Option<&'a Operation> {
        let item = doc.paths.paths.get(path)?;
        match method.as_str() {
            "GET" => item.get.as_ref(),
            "PUT" => item.put.as_ref(),
            "POST" => item.post.as_ref(),
            "DELETE" => item.delete.as_ref(),
            "PATCH" => item.patch.as_ref(),
            _ => None,
        }
    }

    /// (method, path) of every operation in the document.
    fn documented(doc: &utoipa::openapi::OpenApi) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
                ("HEAD", &item.head),
                ("OPTIONS", &item.options),
                ("TRACE", &item.trace),
            ] {
                if op.is_some() {
                    all.insert((method.to_owned(), path.clone()));
                }
            }
        }
        all
    }

    #[test]
    fn every_registered_route_is_documented_and_nothing_else() {
        let routes = RouteList::of(crate::routes);
        assert!(
            routes.0.len() > 40,
            "the route table looks empty: {:?}",
            routes.0
        );
        let doc = ApiDoc::openapi();
        let missing: Vec<String> = routes
            .0
            .iter()
            .filter(|r| operation(&doc, &r.method, r.path).is_none())
            .map(|r| format!("{} {} (handler {})", r.method, r.path, r.handler))
            .collect();
        assert!(
            missing.is_empty(),
            "routes the gateway serves but the OpenAPI document lacks (give the handler a \
             #[utoipa::path] and list it in ApiDoc's paths): {missing:#?}"
        );
        let registered: BTreeSet<(String, String)> = routes
            .0
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        let unserved: Vec<_> = documented(&doc).difference(&registered).cloned().collect();
        assert!(
            unserved.is_empty(),
            "operations in the document that no route serves: {unserved:?}"
        );
        let mut seen = BTreeSet::new();
        for r in &routes.0 {
            assert!(
                seen.insert((r.method.to_string(), r.path)),
                "{} {} is registered twice",
                r.method,
                r.path
            );
        }
    }

    /// Every `$ref` in `value` that points into the document's components.
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    if key == "$ref" {
                        out.push(v.as_str().expect("a $ref is a string").to_owned());
                    } else {
                        refs(v, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn document_is_valid_openapi_3() {
        let text = document();
        let parsed: utoipa::openapi::OpenApi =
            serde_json::from_str(text).expect("the served document parses as an OpenAPI");
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            value,
            "the document round-trips through utoipa's types unchanged"
        );
        let version = value["openapi"].as_str().unwrap();
        assert!(version.starts_with("3."), "openapi version {version}");
        assert!(value["info"]["title"].is_string() && value["info"]["version"].is_string());
        assert_eq!(
            value["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        assert_eq!(value["security"], serde_json::json!([{ BEARER: [] }]));

        // Every reference resolves.
        let mut all = Vec::new();
        refs(&value, &mut all);
        assert!(!all.is_empty());
        for reference in all {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{reference} is not local"));
            assert!(
                value.pointer(pointer).is_some(),
                "{reference} resolves to nothing"
            );
        }

        let mut operation_ids = BTreeSet::new();
        for (path, item) in value["paths"].as_object().unwrap() {
            assert!(path.starts_with('/'), "{path}");
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let at = format!("{method} {path}");
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(
                    !id.is_empty() && operation_ids.insert(id.to_owned()),
                    "{at}: operationId {id:?} missing or not unique"
                );
                // Path parameters: exactly the path's template names, each once, required.
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let mut names = BTreeSet::new();
                for p in &params {
                    let name = p["name"].as_str().unwrap();
                    assert!(
                        names.insert((name.to_owned(), p["in"].to_string())),
                        "{at}: parameter {name} twice"
                    );
                    if p["in"] == "path" {
                        assert_eq!(p["required"], true, "{at}: {name}");
                    }
                }
                let in_path: BTreeSet<&str> = params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                assert_eq!(in_path, templated, "{at}: path parameters");
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{at}: no success status"
                );
                for (status, response) in responses {
                    assert!(
                        status.len() == 3 && status.parse::<u16>().is_ok(),
                        "{at}: {status}"
                    );
                    assert!(response["description"].is_string(), "{at} {status}");
                    if status.as_str() >= "400" {
                        assert!(
                            response["content"]["application/json"]["schema"].is_object(),
                            "{at} {status}: an error without a JSON body"
                        );
                    }
                }
                let secured = op.get("security") != Some(&serde_json::json!([{}]));
                if secured {
                    assert!(responses.contains_key("401"), "{at}: secured without 401");
                }
                assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{at}");
            }
        }
    }

    #[test]
    fn only_the_documented_public_routes_need_no_token() {
        let doc = ApiDoc::openapi();
        let public: BTreeSet<(String, String)> = documented(&doc)
            .into_iter()
            .filter(|(method, path)| {
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                is_public(operation(&doc, &method, path).unwrap())
            })
            .collect();
        let expected: BTreeSet<(String, String)> = [
            ("GET", "/health"),
            ("GET", "/version"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("GET", "/"),
            ("GET", "/ui"),
            ("GET", "/ui/"),
            ("GET", "/ui/{file}"),
            ("POST", "/auth/register"),
            ("POST", "/auth/login"),
        ]
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
        assert_eq!(public, expected);
    }

    /// Limits written as literals in schema attributes are the ones the code enforces.
    #[test]
    fn documented_limits_match_the_code() {
        let value: serde_json::Value = serde_json::from_str(document()).unwrap();
        let schema = |name: &str| value["components"]["schemas"][name].clone();
        let publish = schema("PublishBody");
        assert_eq!(publish["properties"]["ttl_ms"]["maximum"], api::MAX_TTL_MS);
        assert_eq!(
            publish["properties"]["delay_ms"]["maximum"],
            api::MAX_DELAY_MS
        );
        assert_eq!(publish["properties"]["ttl_ms"]["minimum"], 1);
        // Exactly one of payload and payload_base64, which a schema of fields cannot say.
        assert!(publish.get("required").is_none(), "{publish}");
        assert_eq!(
            publish["properties"]["payload_base64"]["contentEncoding"],
            "base64"
        );
        assert_eq!(
            publish["properties"]["headers"]["maxProperties"],
            mom_common::message::MAX_HEADERS
        );
        assert_eq!(
            publish["properties"]["content_type"]["maxLength"],
            mom_common::message::MAX_CONTENT_TYPE_CHARS
        );
        let limit = mom_common::message::MAX_PAYLOAD_BYTES.to_string();
        assert!(PUBLISH_BODY.contains(&limit));
        assert!(publish["properties"]["payload_base64"]["description"]
            .as_str()
            .is_some_and(|d| d.contains(&limit)));
        // Publishes take JSON and octet-stream bodies, with the raw form's query parameters.
        let operation = &value["paths"]["/queues/{name}/publish"]["post"];
        let content = &operation["requestBody"]["content"];
        assert!(
            content["application/json"].is_object()
                && content["application/octet-stream"].is_object()
        );
        let parameters: Vec<&str> = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for name in [
            "name",
            "routing_key",
            "ttl_ms",
            "mandatory",
            "message_id",
            "X-Mom-Content-Type",
        ] {
            assert!(parameters.contains(&name), "{name} in {parameters:?}");
        }
        let delivery = schema("Delivery");
        for field in ["payload", "payload_base64", "headers", "content_type"] {
            assert!(
                delivery["properties"][field].is_object(),
                "Delivery.{field}"
            );
        }
        assert_eq!(
            schema("BatchBody")["properties"]["messages"]["maxItems"],
            api::MAX_BATCH
        );
        let pull = schema("PullBody");
        assert_eq!(
            pull["properties"]["max"]["maximum"],
            crate::mailboxes::MAX_PULL
        );
        assert_eq!(
            pull["properties"]["wait_ms"]["maximum"],
            crate::mailboxes::MAX_WAIT_MS
        );
        assert_eq!(
            pull["properties"]["visibility_timeout_ms"]["maximum"],
            crate::mailboxes::MAX_VISIBILITY_TIMEOUT_MS
        );
        // The enums the document lists are the ones the code parses.
        let kinds = schema("ExchangeKind")["enum"].clone();
        for kind in kinds.as_array().unwrap() {
            kind.as_str().unwrap().parse::<ExchangeKind>().unwrap();
        }
        assert_eq!(kinds.as_array().unwrap().len(), 3);
        for kind in schema("ResourceKind")["enum"].as_array().unwrap() {
            kind.as_str().unwrap().parse::<ResourceKind>().unwrap();
        }
    }

    #[actix_web::test]
    async fn openapi_json_answers_200_with_the_document() {
        // The real route table; only /openapi.json is called, which needs no state.
        let app = actix_test::init_service(App::new().configure(crate::routes)).await;
        let response = actix_test::call_service(
            &app,
            actix_test::TestRequest::get()
                .uri("/openapi.json")
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "application/json"
        );
        let body: serde_json::Value = actix_test::read_body_json(response).await;
        assert!(body["openapi"].as_str().unwrap().starts_with("3."));
        assert!(body["paths"]["/exchanges/{name}/publish"]["post"].is_object());
        assert!(body["paths"]["/openapi.json"]["get"].is_object());
    }
}
