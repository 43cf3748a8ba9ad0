//! The ingress pipeline, one module per step, in the order of
//! `docs/pipeline.md`. Each step either adds facts to the request's
//! [`Context`] or refuses with a [`Refusal`]; nothing is charged, metered or
//! stored for a refused request.

pub mod api_key;
pub mod credentials;
pub mod forward;
pub mod idempotency;
pub mod limits;
pub mod org;
pub mod throttle;

use crate::directory::KeyEntry;
use http::{HeaderName, HeaderValue};
use std::borrow::Cow;
use std::sync::Arc;
use tollgate_core::Rejection;
use tollgate_core::route::RouteClass;

/// Facts gathered about one request as it passes the steps.
#[derive(Debug)]
pub struct Context {
    /// Kept from the client if valid, else made here.
    pub request_id: String,
    /// Index of the matched route.
    pub route: usize,
    /// The route's product.
    pub product: String,
    /// Read or write.
    pub class: RouteClass,
    /// The authenticated key, once step 2 passed.
    pub key: Option<Arc<KeyEntry>>,
    /// A rate class named by a credential (the JWT step will set it from a
    /// claim such as `tier=premium`); `None` uses the plan's default class.
    pub rate_class: Option<String>,
    /// The signature scheme that verified the request (step 4), if signed.
    pub signature: Option<tollgate_core::signing::Scheme>,
}

/// A step's refusal: which rejection, a human detail, and any extra headers
/// (`Allow` for 405, `WWW-Authenticate` for 401).
#[derive(Debug)]
pub struct Refusal {
    /// The stable reason.
    pub rejection: Rejection,
    /// What happened this time.
    pub detail: Cow<'static, str>,
    /// Headers to add to the problem response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Names of the RateLimit policies that refused (`violated-policies`).
    pub violated: Vec<String>,
}

impl Refusal {
    /// A refusal with no extra headers.
    pub fn new(rejection: Rejection, detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            rejection,
            detail: detail.into(),
            headers: Vec::new(),
            violated: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal::new(rejection, rejection.title())
    }
}
