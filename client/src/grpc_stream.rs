//! The gRPC transport of [`crate::DeliveryStream`]: the gateway's `mom.v1.Consumer/Consume`
//! server-streaming call, at the address its `GET /version` names. The messages and the credit
//! are the SSE stream's; only the framing differs (protobuf deliveries with the payload as
//! bytes, refusals as gRPC statuses).
//!
//! A dead gateway is noticed by HTTP/2 keep-alive pings (the gateway pings too), so a stream
//! whose connection silently died ends and is reopened, as an SSE stream's idle limit does.

use crate::connection::Connection;
use crate::error::ClientError;
use crate::stream::StreamOptions;
use mom_common::proto::consumer_client::ConsumerClient;
use mom_common::{proto, MailboxName};
use serde::Deserialize;
use std::time::Duration;
use tonic::transport::Endpoint;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The deliveries of one open `Consume` call.
pub(crate) type Deliveries = tonic::Streaming<proto::Delivery>;

#[derive(Deserialize)]
struct Version {
    grpc: Option<String>,
}

/// Opens a `Consume` call of `mailbox`; a refusal is the REST API's error for it.
pub(crate) async fn open(
    conn: &Connection,
    mailbox: &MailboxName,
    options: &StreamOptions,
) -> Result<Deliveries, ClientError> {
    let version: Version = conn
        .call(conn.request(reqwest::Method::GET, "/version"))
        .await?;
    let Some(address) = version.grpc else {
        return Err(ClientError::Stream(
            "the gateway serves no gRPC (its grpc_listen is unset); stream over SSE instead".into(),
        ));
    };
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| ClientError::Stream(format!("bad gRPC address {address:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(PING_EVERY)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ClientError::Unreachable(format!("gRPC at {address}: {e}")))?;
    let mut request = tonic::Request::new(proto::ConsumeRequest {
        mailbox: Some(mailbox.to_proto()),
        prefetch: options.prefetch.unwrap_or(0),
        visibility_timeout_ms: options
            .visibility_timeout
            .map_or(0, |t| (t.as_millis() as u64).max(1)),
    });
    let bearer = format!("Bearer {}", conn.token())
        .parse()
        .map_err(|_| ClientError::Stream("the token is not valid metadata".into()))?;
    request.metadata_mut().insert("authorization", bearer);
    let mut client = ConsumerClient::new(channel)
        .max_decoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES);
    match client.consume(request).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(error(status)),
    }
}

/// A refusal as the REST API's error (401, 403, 404, 400); anything else is worth reopening
/// the stream after (`None`).
pub(crate) fn refusal(status: &tonic::Status) -> Option<ClientError> {
    let http = match status.code() {
        tonic::Code::Unauthenticated => 401,
        tonic::Code::PermissionDenied => 403,
        tonic::Code::NotFound => 404,
        tonic::Code::InvalidArgument => 400,
        _ => return None,
    };
    Some(ClientError::Api {
        status: http,
        message: status.message().to_owned(),
    })
}

fn error(status: tonic::Status) -> ClientError {
    refusal(&status).unwrap_or_else(|| ClientError::Unreachable(status.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_the_rest_statuses_and_the_rest_passes() {
        let refused = refusal(&tonic::Status::permission_denied("no read on q"));
        assert!(
            matches!(refused, Some(ClientError::Api { status: 403, ref message }) if message == "no read on q")
        );
        assert!(refusal(&tonic::Status::unavailable("restarting")).is_none());
        assert!(refusal(&tonic::Status::cancelled("gone")).is_none());
    }
}
