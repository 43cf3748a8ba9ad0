//! Step 8, idempotency: on routes that require it (by default every write
//! route), exactly one execution per `Idempotency-Key`, scoped to the
//! organization. See `docs/idempotency.md` for the rules.
//!
//! The request body is read (up to the body limit) and fingerprinted with
//! the method, path and query. The store then decides atomically: the first
//! request takes the key (in flight); a retry while it runs gets 409; a retry
//! after it completed gets the stored response, byte for byte, with
//! `Idempotent-Replayed: true` and no upstream call; a different request with
//! the same key gets 422. After the upstream answers, a 5xx or a failure
//! releases the key (nothing was charged, a retry may run); any other answer
//! is stored before the client sees it.

use super::Refusal;
use crate::config::IdempotencyConfig;
use crate::pipeline::forward;
use crate::{BoxError, ProxyBody};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use tollgate_core::Rejection;
use tollgate_core::idempotency::{self, KeyError};
use tollgate_core::ids::OrgId;
use tollgate_core::route::IdempotencyMode;
use tollgate_core::time::UnixMillis;
use tollgate_store::{IdempotencyBegin, Store, StoredResponse};

/// `Idempotency-Key`
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `Idempotent-Replayed`, set on replays.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// `Tollgate-Replay-Body: omitted`, set on replays whose body was too large to keep.
pub static REPLAY_BODY: HeaderName = HeaderName::from_static("tollgate-replay-body");

/// Response headers not kept for replay: they describe this answer, not the
/// result (a replay gets its own request id, date and rate-limit state).
const NOT_REPLAYED: [&str; 7] = [
    "x-request-id",
    "date",
    "content-length",
    "ratelimit",
    "ratelimit-policy",
    "retry-after",
    "idempotent-replayed",
];

/// The key a request holds while it runs.
#[derive(Debug, Clone)]
pub struct Ticket {
    org_id: OrgId,
    key: String,
    fingerprint: [u8; 32],
}

/// What step 8 decided.
#[derive(Debug)]
pub enum Step {
    /// Not an idempotent request: forward as is.
    Pass,
    /// This request holds the key: forward it, then complete or release.
    Hold(Ticket),
    /// A completed request with this key: answer with its response.
    Replay(Response<ProxyBody>),
}

/// The key from the request headers per the route's mode.
pub fn key_of(headers: &HeaderMap, mode: IdempotencyMode) -> Result<Option<String>, Refusal> {
    if mode == IdempotencyMode::Off {
        return Ok(None);
    }
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return match mode {
            IdempotencyMode::Required => Err(Refusal::new(
                Rejection::IdempotencyKeyRequired,
                "this route requires an Idempotency-Key header (1 to 255 printable ASCII characters)",
            )),
            _ => Ok(None),
        };
    };
    if values.next().is_some() {
        return Err(Refusal::new(
            Rejection::IdempotencyKeyInvalid,
            "send exactly one Idempotency-Key header",
        ));
    }
    idempotency::parse_key(value.as_bytes())
        .map(Some)
        .map_err(|e: KeyError| Refusal::new(Rejection::IdempotencyKeyInvalid, e.to_string()))
}

/// Reads a request body completely, up to `limit` bytes.
pub async fn read_body(body: hyper::body::Incoming, limit: u64) -> Result<Bytes, Refusal> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(Refusal::new(
            Rejection::PayloadTooLarge,
            format!("the body is larger than the limit of {limit} bytes"),
        )),
        Err(error) => {
            tracing::debug!(%error, "request body unreadable");
            Err(Refusal::new(
                Rejection::RequestBodyUnreadable,
                "the request body could not be read",
            ))
        }
    }
}

fn store_failed(error: tollgate_store::StoreError) -> Refusal {
    tracing::error!(%error, "idempotency store failed");
    Refusal::new(
        Rejection::StoreUnavailable,
        "the store failed; retry with the same Idempotency-Key",
    )
}

/// Takes the key, or finds why not.
#[allow(clippy::too_many_arguments)]
pub async fn begin(
    store: &dyn Store,
    config: &IdempotencyConfig,
    org_id: &OrgId,
    key: String,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    now: UnixMillis,
) -> Result<Step, Refusal> {
    let fingerprint = idempotency::fingerprint(method, path, query, body);
    let locked_until =
        now.plus_seconds(i64::try_from(config.lock_timeout_seconds).unwrap_or(i64::MAX));
    let expires_at = now.plus_seconds(i64::try_from(config.retention_seconds).unwrap_or(i64::MAX));
    let found = store
        .idempotency_begin(org_id, &key, &fingerprint, now, locked_until, expires_at)
        .await
        .map_err(store_failed)?;
    match found {
        IdempotencyBegin::Started => Ok(Step::Hold(Ticket {
            org_id: org_id.clone(),
            key,
            fingerprint,
        })),
        IdempotencyBegin::InFlight { .. } => Err(Refusal::new(
            Rejection::IdempotencyInFlight,
            "a request with this Idempotency-Key is still in progress; retry after it completes",
        )
        .with_header(
            super::throttle::RETRY_AFTER.clone(),
            HeaderValue::from_static("1"),
        )),
        IdempotencyBegin::Mismatch => Err(Refusal::new(
            Rejection::IdempotencyKeyMismatch,
            "this Idempotency-Key was already used for a request with a different method, path, query or body",
        )),
        IdempotencyBegin::Completed(stored) => Ok(Step::Replay(replay(stored))),
    }
}

fn replay(stored: StoredResponse) -> Response<ProxyBody> {
    let mut response = Response::new(forward::full(Bytes::from(stored.body)));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(&IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    if stored.body_omitted {
        headers.insert(&REPLAY_BODY, HeaderValue::from_static("omitted"));
    }
    response
}

/// Releases the key after an upstream failure, so a retry can run.
pub async fn release(store: &dyn Store, ticket: &Ticket) {
    if let Err(error) = store
        .idempotency_release(&ticket.org_id, &ticket.key, &ticket.fingerprint)
        .await
    {
        // The lock lapses by itself after lock_timeout_seconds.
        tracing::warn!(%error, "could not release an idempotency key");
    }
}

/// Stores the response for replay, then hands it on. The body is read up to
/// `max_response_bytes`; a larger body is kept only as status and headers
/// and streamed on to the client.
pub async fn complete(
    store: &dyn Store,
    config: &IdempotencyConfig,
    ticket: &Ticket,
    response: Response<ProxyBody>,
    timeout: std::time::Duration,
    now: UnixMillis,
) -> Result<Response<ProxyBody>, Refusal> {
    let (parts, mut body) = response.into_parts();
    let mut buffer = BytesMut::new();
    let mut omitted = false;
    // The upstream executed the request; if its answer breaks off or stalls,
    // keep the key in flight: it lapses after the lock timeout, and a retry
    // until then is told to wait, not run twice.
    let reading = async {
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => {
                    tracing::warn!(%error, "upstream body failed after execution");
                    return Err(Refusal::new(
                        Rejection::UpstreamUnavailable,
                        "the upstream's answer broke off",
                    ));
                }
            };
            // Trailers are not kept: answers worth replaying are plain bodies.
            if let Ok(data) = frame.into_data() {
                buffer.extend_from_slice(&data);
                if buffer.len() > config.max_response_bytes {
                    omitted = true;
                    break;
                }
            }
        }
        Ok(())
    };
    // Bounded: the pipeline runs detached from its client, so nothing else
    // would end a read from an upstream that stalls mid-answer.
    match tokio::time::timeout(timeout, reading).await {
        Ok(read) => read?,
        Err(_) => {
            tracing::warn!("upstream body stalled after execution");
            return Err(Refusal::new(
                Rejection::UpstreamTimeout,
                "the upstream's answer did not finish within the request timeout",
            ));
        }
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(name, _)| !NOT_REPLAYED.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: if omitted { Vec::new() } else { buffer.to_vec() },
        body_omitted: omitted,
    };
    let expires_at = now.plus_seconds(i64::try_from(config.retention_seconds).unwrap_or(i64::MAX));
    store
        .idempotency_complete(
            &ticket.org_id,
            &ticket.key,
            &ticket.fingerprint,
            &stored,
            expires_at,
        )
        .await
        .map_err(store_failed)?;
    let prefix = buffer.freeze();
    let body = if omitted {
        PrefixedBody {
            prefix: Some(prefix),
            rest: body,
        }
        .boxed()
    } else {
        forward::full(prefix)
    };
    Ok(Response::from_parts(parts, body))
}

/// A body that first yields `prefix`, then the rest of `rest`.
struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: ProxyBody,
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        if let Some(prefix) = &self.prefix {
            let len = prefix.len() as u64;
            hint.set_lower(hint.lower() + len);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + len);
            }
        }
        hint
    }
}
