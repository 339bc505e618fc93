//! The one error type of the client library.

use serde::Deserialize;

/// What can go wrong talking to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent, or its answer could not be read or decoded.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The gateway answered with a non-2xx status.
    #[error("gateway answered {status}: {message}")]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The `error` field of the JSON body, or the raw body text when it is not such JSON.
        message: String,
    },
    /// A stream ([`crate::DeliveryStream`]) was ended by the gateway (an `error` event: a node
    /// refused it), or sent an event that is not a delivery.
    #[error("stream ended: {0}")]
    Stream(String),
    /// The gateway's gRPC service could not be reached, or a call to it failed midway (a
    /// gateway restarting, say): worth trying again.
    #[error("gRPC: {0}")]
    Unreachable(String),
}

impl ClientError {
    /// Builds the [`ClientError::Api`] for a non-2xx answer from its status and body text.
    ///
    /// The message is the `error` field of a `{"error": "..."}` body; otherwise the trimmed body
    /// text; for an empty body, the status's canonical reason (e.g. "Not Found").
    pub fn from_response(status: u16, body: &str) -> ClientError {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = match serde_json::from_str::<ErrorBody>(body) {
            Ok(parsed) => parsed.error,
            Err(_) if body.trim().is_empty() => reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no body")
                .to_owned(),
            Err(_) => body.trim().to_owned(),
        };
        ClientError::Api { status, message }
    }

    /// The HTTP status of an [`ClientError::Api`] error (or of a reqwest error that has one).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Http(e) => e.status().map(|s| s.as_u16()),
            ClientError::Stream(_) | ClientError::Unreachable(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> (u16, String) {
        match ClientError::from_response(status, body) {
            ClientError::Api { status, message } => (status, message),
            other => panic!("expected Api, got {other:?}"),
        }
    }

    #[test]
    fn takes_message_from_json_error_body() {
        assert_eq!(
            api(409, r#"{"error":"user \"bob\" already exists"}"#),
            (409, r#"user "bob" already exists"#.to_owned())
        );
    }

    #[test]
    fn ignores_extra_json_fields() {
        assert_eq!(api(400, r#"{"error":"bad name","detail":1}"#).1, "bad name");
    }

    #[test]
    fn falls_back_to_raw_text() {
        assert_eq!(
            api(502, "  upstream died\n"),
            (502, "upstream died".to_owned())
        );
        // JSON, but not the error shape: keep it verbatim.
        assert_eq!(api(500, r#"{"message":"x"}"#).1, r#"{"message":"x"}"#);
        assert_eq!(api(500, r#"{"error":42}"#).1, r#"{"error":42}"#);
    }

    #[test]
    fn empty_body_uses_canonical_reason() {
        assert_eq!(api(404, ""), (404, "Not Found".to_owned()));
        assert_eq!(api(599, " "), (599, "no body".to_owned()));
    }

    #[test]
    fn status_accessor_and_display() {
        let e = ClientError::from_response(401, r#"{"error":"token expired"}"#);
        assert_eq!(e.status(), Some(401));
        assert_eq!(e.to_string(), "gateway answered 401: token expired");
    }
}
