//! What a publish request carries, read into messages: a JSON body (one message or a batch,
//! each with a text `payload` or a binary `payload_base64`, optional `headers` and
//! `content_type`), or, with `Content-Type: application/octet-stream`, one message whose
//! payload is the body as is, with its routing key and options in the query string and its
//! headers and content type in `X-Mom-*` request headers. [`crate::api`] checks and sends them.

use crate::error::ApiError;
use actix_web::{dev, http::header, web, FromRequest, HttpRequest};
use base64::Engine as _;
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use mom_common::message::{MessageError, MAX_PAYLOAD_BYTES};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Request headers that each carry one message header: `X-Mom-Header-<name>: <value>`
/// (HTTP header names are case-insensitive, so `<name>` arrives in lower case).
pub const HEADER_PREFIX: &str = "x-mom-header-";
/// The request header that carries an octet-stream message's content type.
pub const CONTENT_TYPE_HEADER: &str = "x-mom-content-type";
/// The body type that makes a publish one raw message.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// One message of a JSON publish.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    #[serde(default)]
    pub routing_key: String,
    /// The message as text (stored as its UTF-8 bytes). Exactly one of `payload` and
    /// `payload_base64` is given.
    pub payload: Option<String>,
    /// The message as standard base64 (RFC 4648, padded), for binary payloads: at most 4 MiB
    /// (4194304 bytes) once decoded.
    #[schema(content_encoding = "base64")]
    pub payload_base64: Option<String>,
    /// The publisher's own headers, delivered with the message: at most 64, names 1-128
    /// characters of `[A-Za-z0-9._-]`, values at most 4096 bytes.
    #[serde(default)]
    #[schema(schema_with = headers_schema)]
    pub headers: BTreeMap<String, String>,
    /// The payload's content type (a MIME type such as `image/png`), delivered with the
    /// message; at most 255 characters.
    #[schema(max_length = 255)]
    pub content_type: Option<String>,
    /// Milliseconds after which the message is never delivered; none: no expiry.
    #[schema(minimum = 1, maximum = 315_360_000_000_u64)]
    pub ttl_ms: Option<u64>,
    /// Milliseconds the message stays invisible to consumers after it is stored (delayed
    /// delivery); none or 0: deliverable at once. A TTL counts from the publish, not from the
    /// end of the delay.
    #[schema(minimum = 0, maximum = 31_536_000_000_u64)]
    pub delay_ms: Option<u64>,
    /// Refuse (422) instead of answering `routed: 0` when no queue or subscriber would get
    /// the message (it is not stored then either way).
    #[serde(default)]
    pub mandatory: bool,
    /// The publisher's own id for the message (1-128 of `[A-Za-z0-9._-]`): a retry with the
    /// same id, to the same destination and routing key, is stored once. None: the gateway
    /// mints one.
    pub message_id: Option<String>,
}

/// The OpenAPI schema of a message's headers, with the limits of [`mom_common::message`].
fn headers_schema() -> utoipa::openapi::Object {
    use mom_common::message::{MAX_HEADERS, MAX_HEADER_NAME_CHARS, MAX_HEADER_VALUE_BYTES};
    use utoipa::openapi::{schema::Type, ObjectBuilder};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "The publisher's own headers, delivered with the message: at most {MAX_HEADERS}, \
             names 1-{MAX_HEADER_NAME_CHARS} characters of `[A-Za-z0-9._-]`, values at most \
             {MAX_HEADER_VALUE_BYTES} bytes."
        )))
        .max_properties(Some(MAX_HEADERS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^[A-Za-z0-9._-]{{1,{MAX_HEADER_NAME_CHARS}}}$"
                ))),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_HEADER_VALUE_BYTES)),
        ))
        .build()
}

/// Up to [`crate::api::MAX_BATCH`] messages in one publish request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    #[schema(min_items = 1, max_items = 1000)]
    pub messages: Vec<PublishBody>,
}

/// One message to publish, its payload as bytes, however it came; not checked yet.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// Empty: none given.
    pub content_type: String,
    pub ttl_ms: Option<u64>,
    pub delay_ms: Option<u64>,
    pub mandatory: bool,
    pub message_id: Option<String>,
}

/// The decoded size of standard base64 text, from its length alone (exact for valid text).
fn decoded_len(encoded: &str) -> usize {
    let padding = encoded.bytes().rev().take(2).filter(|b| *b == b'=').count();
    (encoded.len() / 4 * 3).saturating_sub(padding)
}

/// `payload_base64` decoded; one that would be too large is refused (413) before decoding.
pub fn decode_base64(encoded: &str) -> Result<Vec<u8>, ApiError> {
    let size = decoded_len(encoded);
    if size > MAX_PAYLOAD_BYTES {
        return Err(MessageError::PayloadTooLarge { size }.into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| ApiError::BadRequest(format!("payload_base64 is not valid base64: {e}")))
}

impl TryFrom<PublishBody> for Incoming {
    type Error = ApiError;

    fn try_from(body: PublishBody) -> Result<Incoming, ApiError> {
        let payload = match (body.payload, body.payload_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => decode_base64(&encoded)?,
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "give either payload (text) or payload_base64 (binary), not both".into(),
                ))
            }
            (None, None) => {
                return Err(ApiError::BadRequest(
                    "missing field `payload` (text) or `payload_base64` (binary)".into(),
                ))
            }
        };
        Ok(Incoming {
            routing_key: body.routing_key,
            payload,
            headers: body.headers,
            content_type: body.content_type.unwrap_or_default(),
            ttl_ms: body.ttl_ms,
            delay_ms: body.delay_ms,
            mandatory: body.mandatory,
            message_id: body.message_id,
        })
    }
}

/// The query parameters of an octet-stream publish, which has nowhere else to carry them. A
/// JSON publish carries them in its body and ignores the query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RawQuery {
    /// Octet-stream bodies only: the message's routing key (none: the empty key).
    #[serde(default)]
    pub routing_key: String,
    /// Octet-stream bodies only: as `ttl_ms` of a JSON body.
    #[param(minimum = 1, maximum = 315_360_000_000_u64)]
    pub ttl_ms: Option<u64>,
    /// Octet-stream bodies only: as `delay_ms` of a JSON body.
    #[param(minimum = 0, maximum = 31_536_000_000_u64)]
    pub delay_ms: Option<u64>,
    /// Octet-stream bodies only: as `mandatory` of a JSON body (`true` or `false`).
    #[serde(default)]
    pub mandatory: bool,
    /// Octet-stream bodies only: as `message_id` of a JSON body.
    pub message_id: Option<String>,
}

/// Whether the request's body is one raw message (`Content-Type: application/octet-stream`,
/// parameters such as `; charset=` aside).
pub fn is_octet_stream(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(OCTET_STREAM))
}

/// A request header's value as text; headers and content types are UTF-8 strings.
fn header_text<'a>(name: &str, value: &'a header::HeaderValue) -> Result<&'a str, ApiError> {
    std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::BadRequest(format!("headers: the value of {name} is not UTF-8")))
}

/// Everything of an octet-stream publish but its payload: the query string and the `X-Mom-*`
/// request headers.
pub fn raw_message(request: &HttpRequest) -> Result<Incoming, ApiError> {
    let query = web::Query::<RawQuery>::from_query(request.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?
        .into_inner();
    let mut headers = BTreeMap::new();
    let mut content_type = None;
    for (name, value) in request.headers() {
        let name = name.as_str();
        if name == CONTENT_TYPE_HEADER {
            let text = header_text("X-Mom-Content-Type", value)?;
            if content_type.replace(text.to_owned()).is_some() {
                return Err(ApiError::BadRequest(
                    "content_type: X-Mom-Content-Type is given more than once".into(),
                ));
            }
        } else if let Some(key) = name.strip_prefix(HEADER_PREFIX) {
            let shown = format!("X-Mom-Header-{key}");
            let text = header_text(&shown, value)?;
            if headers.insert(key.to_owned(), text.to_owned()).is_some() {
                return Err(ApiError::BadRequest(format!(
                    "headers: {shown} is given more than once"
                )));
            }
        }
    }
    Ok(Incoming {
        routing_key: query.routing_key,
        payload: Vec::new(),
        headers,
        content_type: content_type.unwrap_or_default(),
        ttl_ms: query.ttl_ms,
        delay_ms: query.delay_ms,
        mandatory: query.mandatory,
        message_id: query.message_id,
    })
}

/// An octet-stream body, read up to the payload limit (413 beyond, without reading the rest).
async fn read_payload(
    request: &HttpRequest,
    payload: &mut dev::Payload,
) -> Result<Vec<u8>, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > MAX_PAYLOAD_BYTES) {
        return Err(MessageError::PayloadTooLarge { size }.into());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_PAYLOAD_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "payload is larger than the limit of {MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A publish request's body: JSON (one message or `{"messages": [...]}`), exactly as the
/// gateway's JSON extractor reads it (its limit is `max_body_bytes`), or one raw message.
pub enum PublishInput {
    Json(serde_json::Value),
    Raw(Incoming),
}

impl FromRequest for PublishInput {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        if !is_octet_stream(request) {
            let json = web::Json::<serde_json::Value>::from_request(request, payload);
            return Box::pin(async move { Ok(PublishInput::Json(json.await?.into_inner())) });
        }
        let request = request.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            // The query and headers first: a malformed one is refused before the body is read.
            let mut message = raw_message(&request)?;
            message.payload = read_payload(&request, &mut payload).await?;
            Ok(PublishInput::Raw(message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn body(json: serde_json::Value) -> Result<Incoming, ApiError> {
        Incoming::try_from(serde_json::from_value::<PublishBody>(json).unwrap())
    }

    #[test]
    fn a_json_message_has_text_or_base64_but_not_both() {
        let text = body(serde_json::json!({"payload": "hé"})).unwrap();
        assert_eq!(text.payload, "hé".as_bytes());
        let binary = body(
            serde_json::json!({"payload_base64": "AP8=", "headers": {"a": "b"},
            "content_type": "application/x-raw"}),
        )
        .unwrap();
        assert_eq!(binary.payload, [0, 255]);
        assert_eq!(binary.headers["a"], "b");
        assert_eq!(binary.content_type, "application/x-raw");
        for (json, needle) in [
            (
                serde_json::json!({"payload": "a", "payload_base64": "YQ=="}),
                "not both",
            ),
            (serde_json::json!({"routing_key": "k"}), "payload_base64"),
            (
                serde_json::json!({"payload_base64": "***"}),
                "payload_base64",
            ),
        ] {
            match body(json) {
                Err(ApiError::BadRequest(message)) => {
                    assert!(message.contains(needle), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_oversized_base64_payload_is_refused_before_decoding() {
        assert_eq!(decoded_len("AP8="), 2);
        assert_eq!(decoded_len("YWJj"), 3);
        let encoded = "A".repeat((MAX_PAYLOAD_BYTES / 3 + 1) * 4);
        assert!(matches!(
            decode_base64(&encoded),
            Err(ApiError::PayloadTooLarge(m)) if m.contains("4194304")
        ));
        let maximal = base64::engine::general_purpose::STANDARD.encode(vec![7; MAX_PAYLOAD_BYTES]);
        assert_eq!(decode_base64(&maximal).unwrap().len(), MAX_PAYLOAD_BYTES);
    }

    #[test]
    fn the_default_json_limit_holds_a_maximal_payload_as_base64_with_maximal_headers() {
        use mom_common::message::{MAX_HEADERS, MAX_HEADER_NAME_CHARS, MAX_HEADER_VALUE_BYTES};
        let payload = MAX_PAYLOAD_BYTES.div_ceil(3) * 4;
        // Quotes, colon and comma around each header.
        let headers = MAX_HEADERS * (MAX_HEADER_NAME_CHARS + MAX_HEADER_VALUE_BYTES + 6);
        assert!(
            payload + headers + 1_024 <= mom_config::DEFAULT_MAX_BODY_BYTES,
            "{payload} + {headers}"
        );
    }

    #[test]
    fn a_raw_message_takes_query_and_x_mom_headers() {
        let request = TestRequest::post()
            .uri("/exchanges/x/publish?routing_key=a.b&ttl_ms=5&mandatory=true&message_id=m-1")
            .insert_header(("Content-Type", "application/octet-stream"))
            .insert_header(("X-Mom-Header-Trace-Id", "t-1"))
            .insert_header(("X-Mom-Content-Type", "image/png"))
            .insert_header(("X-Other", "ignored"))
            .to_http_request();
        assert!(is_octet_stream(&request));
        let message = raw_message(&request).unwrap();
        assert_eq!(
            message,
            Incoming {
                routing_key: "a.b".into(),
                headers: [("trace-id".to_owned(), "t-1".to_owned())].into(),
                content_type: "image/png".into(),
                ttl_ms: Some(5),
                mandatory: true,
                message_id: Some("m-1".into()),
                ..Default::default()
            }
        );
        let unknown = TestRequest::post()
            .uri("/exchanges/x/publish?routing=k")
            .to_http_request();
        assert!(matches!(
            raw_message(&unknown),
            Err(ApiError::BadRequest(_))
        ));
        let json = TestRequest::post()
            .insert_header(("Content-Type", "application/json"))
            .to_http_request();
        assert!(!is_octet_stream(&json));
    }
}
