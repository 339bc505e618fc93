//! What a message carries besides its routing: the payload (bytes), the publisher's headers and
//! a content type, with the limits on them. The gateway checks a publish against these before
//! it sends it (answering 400 or 413), and the node checks again (INVALID_ARGUMENT), so that no
//! oversized message reaches a partition's log.

use std::collections::BTreeMap;

/// The largest payload a message may have, in bytes (after base64 decoding, for JSON
/// publishes that use `payload_base64`).
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;
/// How many headers a message may have.
pub const MAX_HEADERS: usize = 64;
/// The longest header name, in characters (of `[A-Za-z0-9._-]`).
pub const MAX_HEADER_NAME_CHARS: usize = 128;
/// The longest header value, in bytes of UTF-8.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// The longest content type, in characters.
pub const MAX_CONTENT_TYPE_CHARS: usize = 255;

/// The largest gRPC message between the gateway and the nodes (a batch of publishes, a pull's
/// reply), above tonic's default of 4 MiB, which a maximal payload with its envelope exceeds.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 64 << 20;

/// How a message breaks the limits above. Every message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes")]
    PayloadTooLarge { size: usize },
    #[error("headers: {count} headers; at most {MAX_HEADERS} are allowed")]
    TooManyHeaders { count: usize },
    #[error(
        "headers: header name {name:?} must be 1-{MAX_HEADER_NAME_CHARS} characters of [A-Za-z0-9._-]"
    )]
    BadHeaderName { name: String },
    #[error(
        "headers: the value of header {name:?} is {size} bytes; the limit is {MAX_HEADER_VALUE_BYTES} bytes"
    )]
    HeaderValueTooLong { name: String, size: usize },
    #[error("content_type is {chars} characters; the limit is {MAX_CONTENT_TYPE_CHARS}")]
    ContentTypeTooLong { chars: usize },
}

/// `text` as it goes into an error message: at most 64 characters of it.
fn shown(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// Whether `name` may name a header: 1-128 characters of `[A-Za-z0-9._-]`.
pub fn is_header_name(name: &str) -> bool {
    (1..=MAX_HEADER_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a payload's size.
pub fn check_payload_size(size: usize) -> Result<(), MessageError> {
    if size > MAX_PAYLOAD_BYTES {
        return Err(MessageError::PayloadTooLarge { size });
    }
    Ok(())
}

/// Checks a message's headers: how many, their names and the sizes of their values.
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), MessageError> {
    if headers.len() > MAX_HEADERS {
        return Err(MessageError::TooManyHeaders {
            count: headers.len(),
        });
    }
    for (name, value) in headers {
        if !is_header_name(name) {
            return Err(MessageError::BadHeaderName { name: shown(name) });
        }
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(MessageError::HeaderValueTooLong {
                name: name.clone(),
                size: value.len(),
            });
        }
    }
    Ok(())
}

/// Checks a content type's length (empty: none given).
pub fn check_content_type(content_type: &str) -> Result<(), MessageError> {
    let chars = content_type.chars().count();
    if chars > MAX_CONTENT_TYPE_CHARS {
        return Err(MessageError::ContentTypeTooLong { chars });
    }
    Ok(())
}

/// Checks everything a message carries besides its routing.
pub fn check_message(
    payload_size: usize,
    headers: &BTreeMap<String, String>,
    content_type: &str,
) -> Result<(), MessageError> {
    check_payload_size(payload_size)?;
    check_headers(headers)?;
    check_content_type(content_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_names() {
        for good in ["a", "trace-id", "X.Y_z-9", &"n".repeat(128)] {
            assert!(is_header_name(good), "{good}");
        }
        for bad in ["", "a b", "a:b", "é", "a/b", &"n".repeat(129)] {
            assert!(!is_header_name(bad), "{bad}");
        }
    }

    #[test]
    fn limits_are_inclusive_and_named() {
        assert_eq!(check_payload_size(MAX_PAYLOAD_BYTES), Ok(()));
        let too_big = check_payload_size(MAX_PAYLOAD_BYTES + 1).unwrap_err();
        assert!(too_big.to_string().contains("4194304"), "{too_big}");

        let max: BTreeMap<String, String> = (0..MAX_HEADERS)
            .map(|n| (format!("h{n}"), "v".repeat(MAX_HEADER_VALUE_BYTES)))
            .collect();
        assert_eq!(check_headers(&max), Ok(()));
        let mut too_many = max.clone();
        too_many.insert("one-more".into(), String::new());
        assert_eq!(
            check_headers(&too_many),
            Err(MessageError::TooManyHeaders { count: 65 })
        );
        let long = headers(&[("k", &"v".repeat(MAX_HEADER_VALUE_BYTES + 1))]);
        assert!(check_headers(&long)
            .unwrap_err()
            .to_string()
            .starts_with("headers: the value of header \"k\""));
        let bad = check_headers(&headers(&[("bad name", "v")])).unwrap_err();
        assert!(bad.to_string().contains("\"bad name\""), "{bad}");

        assert_eq!(check_content_type(&"t".repeat(255)), Ok(()));
        assert!(check_content_type(&"t".repeat(256))
            .unwrap_err()
            .to_string()
            .starts_with("content_type"));
        assert_eq!(check_message(0, &BTreeMap::new(), ""), Ok(()));
    }

    #[test]
    fn a_long_bad_name_is_shortened_in_the_message() {
        let name = "x ".repeat(1_000);
        let message = check_headers(&headers(&[(&name, "v")]))
            .unwrap_err()
            .to_string();
        assert!(message.len() < 200, "{message}");
    }
}
