//! Server-sent events from an upstream: bytes in, JSON-RPC messages out.

use futures::{Stream, StreamExt};

use super::{MessageStream, UpstreamError, UpstreamMessage};

/// Turns an SSE byte stream into a stream of messages. Events without data
/// (priming events, keep-alives) carry no message and are skipped.
pub fn messages<S, E>(bytes: S) -> MessageStream
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let events = sse_stream::SseStream::from_bytes_stream(bytes);
    Box::pin(events.filter_map(|ev| async move {
        match ev {
            Ok(sse) => {
                let data = sse.data?;
                if data.trim().is_empty() {
                    return None;
                }
                Some(Ok(UpstreamMessage {
                    event_id: sse.id,
                    body: bytes::Bytes::from(data),
                }))
            }
            Err(e) => Some(Err(UpstreamError::Unavailable(format!(
                "event stream broke: {e}"
            )))),
        }
    }))
}
