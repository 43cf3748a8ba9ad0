//! Step 1, limits: header section size, route match (and so product and route
//! class), declared body size.
//!
//! hyper itself refuses a header section larger than its read buffer with a
//! bare 431; that buffer is set well above `ingress.max_header_bytes`, so every
//! oversized request a real client sends is measured here and answered with
//! problem+json.

use super::Refusal;
use http::header::{ALLOW, CONTENT_LENGTH, HeaderValue};
use http::request::Parts;
use tollgate_core::Rejection;
use tollgate_core::route::{RouteLookup, RouteTable};

/// Approximate wire size of the request line and header section.
pub fn header_section_bytes(parts: &Parts) -> usize {
    let request_line = parts.method.as_str().len()
        + parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    parts
        .headers
        .iter()
        .fold(request_line, |sum, (name, value)| {
            sum + name.as_str().len() + value.len() + 4
        })
        + 2
}

/// Checks sizes and finds the route. Returns the route index.
pub fn check(
    parts: &Parts,
    routes: &RouteTable,
    max_header_bytes: usize,
    max_body_bytes: u64,
) -> Result<usize, Refusal> {
    let header_bytes = header_section_bytes(parts);
    if header_bytes > max_header_bytes {
        return Err(Refusal::new(
            Rejection::HeaderTooLarge,
            format!("the header section is {header_bytes} bytes; the limit is {max_header_bytes}"),
        ));
    }
    let route = match routes.lookup(parts.method.as_str(), parts.uri.path()) {
        RouteLookup::Matched(i) => i,
        RouteLookup::NotFound => {
            return Err(Refusal::new(
                Rejection::RouteNotFound,
                format!("no route is configured for {}", parts.uri.path()),
            ));
        }
        RouteLookup::MethodNotAllowed(allowed) => {
            let allow = allowed.join(", ");
            let refusal = Refusal::new(
                Rejection::MethodNotAllowed,
                format!(
                    "{} is not allowed on {}; allowed: {allow}",
                    parts.method,
                    parts.uri.path()
                ),
            );
            return Err(match HeaderValue::from_str(&allow) {
                Ok(value) => refusal.with_header(ALLOW, value),
                Err(_) => refusal,
            });
        }
    };
    if let Some(length) = parts.headers.get(CONTENT_LENGTH) {
        let length: u64 = length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(u64::MAX);
        if length > max_body_bytes {
            return Err(Refusal::new(
                Rejection::PayloadTooLarge,
                format!("the body is declared as {length} bytes; the limit is {max_body_bytes}"),
            ));
        }
    }
    Ok(route)
}
