//! The ingress handler: runs the pipeline steps in order for one request and
//! turns a refusal into a problem+json response.

use crate::pipeline::forward::{self, ForwardSettings, UpstreamClient};
use crate::pipeline::org::PlanScopes;
use crate::pipeline::{Context, Refusal, api_key, limits, org};
use crate::problem::Problem;
use crate::{Clock, ProxyBody, directory::Directory, metrics::Metrics, request_id};
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tollgate_core::route::RouteTable;

/// Everything the ingress path reads. Shared by all connections.
pub struct Ingress {
    pub(crate) routes: RouteTable,
    pub(crate) plans: PlanScopes,
    pub(crate) directory: Arc<Directory>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) client: UpstreamClient,
    pub(crate) forward: ForwardSettings,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: u64,
}

impl Ingress {
    /// Handles one request. Never fails: every error becomes a response.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        remote: SocketAddr,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let request_id = request_id::take_or_make(request.headers());
        let (route, outcome) = self.pipeline(request, remote, &request_id).await;
        let label = route
            .and_then(|i| self.routes.get(i))
            .map_or("unmatched", |r| r.pattern.as_str());
        let (code, response) = match outcome {
            Ok(response) => ("ok", response),
            Err(refusal) => (
                refusal.rejection.code(),
                problem_response(refusal, &request_id),
            ),
        };
        self.metrics
            .request(label, code, started.elapsed().as_secs_f64());
        tracing::debug!(%request_id, route = label, code, status = response.status().as_u16(), "request");
        Ok(response)
    }

    async fn pipeline(
        &self,
        request: Request<Incoming>,
        remote: SocketAddr,
        request_id: &str,
    ) -> (Option<usize>, Result<Response<ProxyBody>, Refusal>) {
        // Step 1: limits and route.
        let (parts, body) = request.into_parts();
        let route = match limits::check(
            &parts,
            &self.routes,
            self.max_header_bytes,
            self.max_body_bytes,
        ) {
            Ok(route) => route,
            Err(refusal) => return (None, Err(refusal)),
        };
        let request = Request::from_parts(parts, body);
        let outcome = self.after_route(request, route, remote, request_id).await;
        (Some(route), outcome)
    }

    async fn after_route(
        &self,
        request: Request<Incoming>,
        route: usize,
        remote: SocketAddr,
        request_id: &str,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let Some(spec) = self.routes.get(route) else {
            return Err(tollgate_core::Rejection::RouteNotFound.into());
        };
        let mut context = Context {
            request_id: request_id.to_owned(),
            route,
            product: spec.product.clone(),
            class: spec.class,
            key: None,
        };
        let now = self.clock.now();
        // Step 2: API key.
        let (key, source) =
            api_key::authenticate(&self.directory, request.headers(), &context.product, now)?;
        // Step 3: organization.
        org::check(&self.directory, &self.plans, &key, &context.product)?;
        context.key = Some(key);
        // Step 10: forward.
        let upstream_request = forward::prepare(request, &context, source, remote, &self.forward)?;
        let response = forward::send(&self.client, upstream_request, &self.forward).await?;
        Ok(forward::respond(response, request_id))
    }
}

/// A refusal as a problem+json response.
pub fn problem_response(refusal: Refusal, request_id: &str) -> Response<ProxyBody> {
    let problem = Problem::from_rejection(refusal.rejection, refusal.detail, request_id);
    let (status, mut headers, body) = problem.into_parts();
    for (name, value) in refusal.headers {
        headers.insert(name, value);
    }
    let mut response = Response::new(forward::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
