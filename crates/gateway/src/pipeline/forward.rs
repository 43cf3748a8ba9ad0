//! Step 10, forward: send the request to the upstream over a pooled keep-alive
//! connection, streaming the body both ways, and clean the headers on the way
//! in and out.
//!
//! On the way to the upstream: hop-by-hop headers go (and any header the
//! client's `Connection` names), every `Tollgate-*` header the client sent goes
//! (only tollgate may set those), the API key goes, and tollgate adds
//! `X-Request-Id`, `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`
//! and its identity headers (`Tollgate-Org-Id`, `Tollgate-Key-Id`,
//! `Tollgate-Product`, `Tollgate-Route-Class`). On the way back hop-by-hop and
//! `Tollgate-*` headers go (the usage report is for tollgate, not the client).

use super::api_key::{KeySource, X_API_KEY};
use super::{Context, Refusal};
use crate::config::UpstreamBase;
use crate::{BoxError, ProxyBody, REQUEST_ID};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::Duration;
use tollgate_core::Rejection;

/// The pooled upstream client.
pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static("connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy-authenticate"),
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("transfer-encoding"),
];
static UPGRADE: HeaderName = HeaderName::from_static("upgrade");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `Tollgate-Org-Id`, sent to the upstream.
pub static TOLLGATE_ORG_ID: HeaderName = HeaderName::from_static("tollgate-org-id");
/// `Tollgate-Key-Id`, sent to the upstream.
pub static TOLLGATE_KEY_ID: HeaderName = HeaderName::from_static("tollgate-key-id");
/// `Tollgate-Product`, sent to the upstream.
pub static TOLLGATE_PRODUCT: HeaderName = HeaderName::from_static("tollgate-product");
/// `Tollgate-Signature-Scheme`: which signature scheme verified the request.
pub static TOLLGATE_SIGNATURE_SCHEME: HeaderName =
    HeaderName::from_static("tollgate-signature-scheme");
/// `Tollgate-Route-Class`, sent to the upstream.
pub static TOLLGATE_ROUTE_CLASS: HeaderName = HeaderName::from_static("tollgate-route-class");

/// Removes hop-by-hop headers, those the `Connection` header names, and every
/// `Tollgate-*` header.
pub fn strip_hop_by_hop_and_internal(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(&UPGRADE);
    let internal: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("tollgate-"))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
}

/// Settings the forward step needs.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// Upstream authority and path prefix.
    pub base: UpstreamBase,
    /// Time to the response head.
    pub request_timeout: Duration,
    /// Body limit, enforced while streaming for bodies without a length.
    pub max_body_bytes: u64,
}

fn upstream_uri(base: &UpstreamBase, original: &Uri) -> Result<Uri, http::Error> {
    let path_and_query = original.path_and_query().map_or("/", |pq| pq.as_str());
    let full = if base.prefix.is_empty() {
        path_and_query.to_owned()
    } else {
        format!("{}{}", base.prefix, path_and_query)
    };
    Uri::builder()
        .scheme("http")
        .authority(base.authority.clone())
        .path_and_query(full)
        .build()
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// Rewrites the client's request for the upstream.
pub fn prepare(
    request: Request<ProxyBody>,
    context: &Context,
    source: KeySource,
    peer: &super::credentials::Peer,
    settings: &ForwardSettings,
) -> Result<Request<ProxyBody>, Refusal> {
    let (mut parts, body) = request.into_parts();
    parts.uri = upstream_uri(&settings.base, &parts.uri).map_err(|_| {
        Refusal::new(
            Rejection::RouteNotFound,
            "the request path cannot be forwarded",
        )
    })?;
    let original_host = parts.headers.get(HOST).cloned();
    let headers = &mut parts.headers;
    strip_hop_by_hop_and_internal(headers);
    match source {
        KeySource::Header => {
            headers.remove(&X_API_KEY);
        }
        KeySource::Bearer => {
            headers.remove(AUTHORIZATION);
        }
        KeySource::Coinbase => {}
    }
    // The Coinbase scheme's headers are credentials for tollgate (the
    // passphrase above all): the upstream never sees them.
    for name in [
        tollgate_core::signing::CB_KEY_HEADER,
        tollgate_core::signing::CB_SIGN_HEADER,
        tollgate_core::signing::CB_TIMESTAMP_HEADER,
        tollgate_core::signing::CB_PASSPHRASE_HEADER,
    ] {
        headers.remove(name);
    }
    if let Ok(host) = HeaderValue::from_str(settings.base.authority.as_str()) {
        headers.insert(HOST, host);
    }
    if let Some(host) = original_host {
        headers.insert(&X_FORWARDED_HOST, host);
    }
    let client_ip = peer.remote.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {client_ip}"),
        None => client_ip,
    };
    if let Some(value) = header_value(&forwarded_for) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
    headers.insert(
        &X_FORWARDED_PROTO,
        HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
    );
    if let Some(scheme) = context.signature {
        headers.insert(
            &TOLLGATE_SIGNATURE_SCHEME,
            HeaderValue::from_static(scheme.as_str()),
        );
    }
    if let Some(value) = header_value(&context.request_id) {
        headers.insert(&REQUEST_ID, value);
    }
    if let Some(key) = &context.key {
        if let Some(value) = header_value(key.org_id.as_str()) {
            headers.insert(&TOLLGATE_ORG_ID, value);
        }
        if let Some(value) = header_value(key.id.as_str()) {
            headers.insert(&TOLLGATE_KEY_ID, value);
        }
    }
    if let Some(value) = header_value(&context.product) {
        headers.insert(&TOLLGATE_PRODUCT, value);
    }
    headers.insert(
        &TOLLGATE_ROUTE_CLASS,
        HeaderValue::from_static(context.class.as_str()),
    );
    Ok(Request::from_parts(parts, body))
}

fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// Sends the request and returns the upstream's response head with its body
/// still streaming.
pub async fn send(
    client: &UpstreamClient,
    request: Request<ProxyBody>,
    settings: &ForwardSettings,
) -> Result<Response<Incoming>, Refusal> {
    match tokio::time::timeout(settings.request_timeout, client.request(request)).await {
        Err(_) => Err(Refusal::new(
            Rejection::UpstreamTimeout,
            format!(
                "the upstream did not answer within {} ms",
                settings.request_timeout.as_millis()
            ),
        )),
        Ok(Err(error)) if caused_by::<LengthLimitError>(&error) => Err(Refusal::new(
            Rejection::PayloadTooLarge,
            format!(
                "the body is larger than the limit of {} bytes",
                settings.max_body_bytes
            ),
        )),
        Ok(Err(error)) if timed_out(&error) => Err(Refusal::new(
            Rejection::UpstreamTimeout,
            "connecting to the upstream timed out",
        )),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "upstream request failed");
            Err(Refusal::new(
                Rejection::UpstreamUnavailable,
                "the upstream could not be reached",
            ))
        }
        Ok(Ok(response)) => Ok(response),
    }
}

/// Reads an answer's body until it ends or passes `limit` bytes. Returns the
/// answer with a body that gives back what was read and then streams the
/// rest, and the number of bytes read: the whole body's size when it ended
/// within the limit, `limit` when it did not (the most a route is charged).
pub async fn read_prefix(
    response: Response<ProxyBody>,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<(Response<ProxyBody>, u64), Refusal> {
    let (parts, mut body) = response.into_parts();
    let mut frames = Vec::new();
    let mut read = 0u64;
    let mut ended = false;
    let reading = async {
        while read <= limit {
            match body.frame().await {
                None => {
                    ended = true;
                    break;
                }
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += data.len() as u64;
                    }
                    frames.push(frame);
                }
                Some(Err(error)) => return Err(error),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, reading).await {
        Err(_) => {
            return Err(Refusal::new(
                Rejection::UpstreamTimeout,
                format!(
                    "the upstream's answer did not finish within {} ms",
                    timeout.as_millis()
                ),
            ));
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream answer broke off");
            return Err(Refusal::new(
                Rejection::UpstreamUnavailable,
                "the upstream's answer broke off",
            ));
        }
        Ok(Ok(())) => {}
    }
    if ended && frames.iter().all(|f| f.is_data()) {
        // Whole and without trailers: sent with its Content-Length.
        let mut whole = bytes::BytesMut::with_capacity(usize::try_from(read).unwrap_or(0));
        for frame in frames {
            if let Ok(data) = frame.into_data() {
                whole.extend_from_slice(&data);
            }
        }
        return Ok((Response::from_parts(parts, full(whole.freeze())), read));
    }
    let replay = futures_util::stream::iter(frames.into_iter().map(Ok::<_, BoxError>));
    let body = if ended {
        http_body_util::StreamBody::new(replay).boxed()
    } else {
        let rest = http_body_util::BodyStream::new(body);
        http_body_util::StreamBody::new(futures_util::StreamExt::chain(replay, rest)).boxed()
    };
    Ok((Response::from_parts(parts, body), read.min(limit)))
}

/// Cleans the upstream's response for the client.
pub fn respond(response: Response<Incoming>, request_id: &str) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop_and_internal(&mut parts.headers);
    set_request_id(&mut parts.headers, request_id);
    Response::from_parts(parts, body.map_err(BoxError::from).boxed())
}

/// Sets `X-Request-Id` on an answer tollgate sends.
pub fn set_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Some(value) = header_value(request_id) {
        headers.insert(&REQUEST_ID, value);
    }
}

/// A client's request body streamed to the upstream; bodies without a
/// Content-Length are counted against the limit while they stream.
pub fn streamed(body: Incoming, max_body_bytes: u64) -> ProxyBody {
    Limited::new(body, usize::try_from(max_body_bytes).unwrap_or(usize::MAX)).boxed()
}

/// A complete body from bytes, for tollgate's own responses.
pub fn full(bytes: Bytes) -> ProxyBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}
