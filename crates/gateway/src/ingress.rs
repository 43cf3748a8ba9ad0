//! The ingress handler: runs the pipeline steps in order for one request and
//! turns a refusal into a problem+json response.

use crate::accounts::{self, Accounts, LedgerWriter, SpendRefusal};
use crate::config::IdempotencyConfig;
use crate::directory::{KeyEntry, OrgEntry};
use crate::limiter::{Admission, Limiter};
use crate::metered_body::MeteredBody;
use crate::pipeline::credentials::{self, Peer};
use crate::pipeline::forward::{self, ForwardSettings, UpstreamClient};
use crate::pipeline::{Context, Refusal, api_key, idempotency, limits, org, throttle};
use crate::plans::Plans;
use crate::problem::Problem;
use crate::{Clock, ProxyBody, directory::Directory, metrics::Metrics, request_id};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tollgate_core::meter::{METERS, Meter};
use tollgate_core::route::RouteTable;
use tollgate_core::throttle::Verdict;

/// `Tollgate-Usage`: the upstream's report of what a request used.
pub static TOLLGATE_USAGE: HeaderName = HeaderName::from_static("tollgate-usage");

/// Everything the ingress path reads. Shared by all connections.
pub struct Ingress {
    pub(crate) routes: RouteTable,
    pub(crate) plans: Plans,
    pub(crate) directory: Arc<Directory>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) store: Arc<dyn tollgate_store::Store>,
    pub(crate) idempotency: IdempotencyConfig,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) credentials: credentials::Credentials,
    pub(crate) ledger: LedgerWriter,
    pub(crate) route_max_units: Vec<tollgate_core::meter::MeterCounts>,
    pub(crate) autocharger: Arc<crate::autocharge::Autocharger>,
    pub(crate) durability: crate::config::Durability,
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
        peer: Peer,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let request_id = request_id::take_or_make(request.headers());
        // The pipeline runs in a task of its own, so a client that goes away
        // (hyper then drops this future) cannot stop it halfway: a hold is
        // always resolved, a queued charge always mirrored, and an
        // Idempotency-Key always completed or released, so the client's
        // retry gets the stored answer instead of waiting out a lock.
        let pipeline = {
            let this = Arc::clone(&self);
            let request_id = request_id.clone();
            tokio::spawn(async move { this.pipeline(request, &peer, &request_id).await })
        };
        let (route, outcome) = match pipeline.await {
            Ok(done) => done,
            Err(error) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: only when the runtime shuts down.
                Err(_) => (
                    None,
                    Err(Refusal::new(
                        tollgate_core::Rejection::UpstreamUnavailable,
                        "the gateway is shutting down",
                    )),
                ),
            },
        };
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
        peer: &Peer,
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
        let outcome = self.after_route(request, route, peer, request_id).await;
        (Some(route), outcome)
    }

    async fn after_route(
        &self,
        request: Request<Incoming>,
        route: usize,
        peer: &Peer,
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
            rate_class: None,
            signature: None,
        };
        let now = self.clock.now();
        // Step 2: API key.
        let (key, source) =
            api_key::authenticate(&self.directory, request.headers(), &context.product, now)?;
        // Step 3: organization.
        let (org_entry, plan) = org::check(&self.directory, &self.plans, &key, &context.product)?;
        // Step 4: credentials the key's policy demands (and any signature sent).
        let (parts, body) = request.into_parts();
        let body = if credentials::needs_body(&parts.headers, &key, spec.class) {
            RequestBody::Buffered(idempotency::read_body(body, self.max_body_bytes).await?)
        } else {
            RequestBody::Streaming(body)
        };
        let verified = credentials::check(
            &self.credentials,
            &parts,
            body.buffered(),
            &key,
            spec.class,
            route,
            peer,
            now,
        )
        .await?;
        context.signature = verified.scheme;
        if let Some(token) = &verified.token {
            context.rate_class.clone_from(&token.rate_class);
        }
        if let Some(scheme) = verified.scheme {
            tracing::debug!(request_id, key_id = %key.id, scheme = scheme.as_str(), "signature verified");
        }
        // Step 5: spend management (every org, pay-as-you-go or not).
        let write = spec.class == tollgate_core::route::RouteClass::Write;
        if let Err(refusal) =
            self.accounts
                .check_spend(&key.org_id, org_entry.cycle_anchor, write, now)
        {
            return Err(spend_refusal(refusal, now));
        }
        // Steps 6 and 7: throttling and quotas.
        let mut admitted = Admitted {
            rate_headers: Vec::new(),
            counted: false,
        };
        if let Some(plan) = plan.as_ref().filter(|p| p.is_metered()) {
            let outcome = self.limiter.admit(&Admission {
                org_id: &key.org_id,
                org: &org_entry,
                key: &key,
                plan,
                cost: plan.cost(route, spec, parts.method.as_str()),
                class: context.rate_class.as_deref(),
                now,
                now_nanos: self.clock.now_nanos(),
            });
            admitted.rate_headers = throttle::headers(&outcome, now);
            if let Some(refusal) = throttle::refusal(&outcome, now, &admitted.rate_headers) {
                return Err(refusal);
            }
            admitted.counted = matches!(outcome.verdict, Verdict::Admit { .. });
        }
        context.key = Some(Arc::clone(&key));
        // From here on, anything but a forwarded, successful request gives
        // back the request count the throttle step took.
        let result = self
            .after_admission(
                parts,
                body,
                spec,
                &context,
                source,
                peer,
                &org_entry,
                plan.as_deref(),
                &key,
                &mut admitted,
                now,
            )
            .await;
        let mut response = match result {
            Ok(response) => response,
            Err(mut refusal) => {
                if admitted.counted {
                    self.limiter.refund_request(&key.org_id, &key.id);
                }
                refusal.headers.extend(admitted.rate_headers);
                return Err(refusal);
            }
        };
        let headers = response.headers_mut();
        for (name, value) in admitted.rate_headers {
            headers.insert(name, value);
        }
        Ok(response)
    }

    #[allow(clippy::too_many_arguments)]
    async fn after_admission(
        &self,
        parts: http::request::Parts,
        body: RequestBody,
        spec: &tollgate_core::route::Route,
        context: &Context,
        source: api_key::KeySource,
        peer: &Peer,
        org_entry: &OrgEntry,
        plan: Option<&crate::plans::Plan>,
        key: &KeyEntry,
        admitted: &mut Admitted,
        now: tollgate_core::time::UnixMillis,
    ) -> Result<Response<ProxyBody>, Refusal> {
        // Step 8: idempotency.
        let (body, ticket) = match idempotency::key_of(&parts.headers, spec.idempotency)? {
            None => (body.into_proxy_body(self.max_body_bytes), None),
            Some(idem_key) => {
                let bytes = match body {
                    RequestBody::Buffered(bytes) => bytes,
                    RequestBody::Streaming(body) => {
                        idempotency::read_body(body, self.max_body_bytes).await?
                    }
                };
                let step = idempotency::begin(
                    self.store.as_ref(),
                    &self.idempotency,
                    &key.org_id,
                    idem_key,
                    parts.method.as_str(),
                    parts.uri.path(),
                    parts.uri.query().unwrap_or(""),
                    &bytes,
                    now,
                )
                .await?;
                match step {
                    idempotency::Step::Replay(response) => {
                        // No upstream call, no new charge, no new usage.
                        if admitted.counted {
                            self.limiter.refund_request(&key.org_id, &key.id);
                            admitted.counted = false;
                        }
                        return Ok(with_request_id(response, &context.request_id));
                    }
                    idempotency::Step::Hold(ticket) => (forward::full(bytes), Some(ticket)),
                    idempotency::Step::Pass => (forward::full(bytes), None),
                }
            }
        };
        // Step 9: reserve the request's maximum cost (pay-as-you-go, priced plans).
        let priced = plan.filter(|p| org_entry.pay_as_you_go && p.is_priced());
        let hold = match priced {
            None => None,
            Some(plan) => {
                let max_units = self
                    .route_max_units
                    .get(context.route)
                    .copied()
                    .unwrap_or([1, 0, 0, 0, 0]);
                let amount = accounts::max_cost(&plan.prices, &max_units);
                let expires_at = now.plus_seconds(
                    i64::try_from(self.idempotency.lock_timeout_seconds).unwrap_or(60),
                );
                match self.accounts.hold(&key.org_id, amount, expires_at, now) {
                    Some(hold) => Some((plan, hold)),
                    None => {
                        if let Some(ticket) = &ticket {
                            idempotency::release(self.store.as_ref(), ticket).await;
                        }
                        let standing = self
                            .accounts
                            .snapshot(&key.org_id, org_entry.cycle_anchor, now)
                            .standing;
                        return Err(Refusal::new(
                            tollgate_core::Rejection::PaymentRequired,
                            format!(
                                "this request may cost up to {amount}; the account has {} available (balance {} + credit limit {} - pending {})",
                                tollgate_core::money::Micros(
                                    i64::try_from(standing.available()).unwrap_or(i64::MIN)
                                ),
                                standing.balance,
                                standing.credit_limit,
                                standing.held
                            ),
                        ));
                    }
                }
            }
        };
        // Step 10: forward, and read what the answer used.
        let request = Request::from_parts(parts, body);
        let priced_plan = hold.as_ref().map(|(plan, _)| *plan);
        let (mut response, failed, usage, answer_bytes) = match self
            .forward_and_measure(request, context, source, peer, priced_plan)
            .await
        {
            Ok(forwarded) => forwarded,
            Err(refusal) => {
                // Never reached the upstream or got no whole answer: nothing
                // is charged, the hold is released, the key freed for a retry.
                if let Some(ticket) = &ticket {
                    idempotency::release(self.store.as_ref(), ticket).await;
                }
                if let Some((_, hold)) = hold {
                    self.accounts.void(&key.org_id, hold, now);
                }
                return Err(refusal);
            }
        };
        // Step 11: settle. The charge is durable before the answer leaves.
        if let Some((plan, hold)) = hold {
            if failed {
                self.accounts.void(&key.org_id, hold, now);
            } else {
                // What is priced: the reported meters, this request, and the
                // body size (declared, or read above). (The quota counters are
                // fed apart: the request was counted at admission, bytes as
                // they stream.)
                let mut priced = usage;
                priced[Meter::Request.index()] = 1;
                priced[Meter::BytesOut.index()] = answer_bytes.unwrap_or(0);
                // If the charge cannot be written, the upstream has still
                // run: an Idempotency-Key stays in flight until it lapses
                // (lock timeout), so a retry is told to wait rather than run
                // the request again at once.
                self.settle(
                    plan,
                    hold,
                    &priced,
                    key,
                    org_entry,
                    &context.request_id,
                    now,
                )
                .await?;
            }
        }
        if let Some(ticket) = &ticket {
            if failed {
                idempotency::release(self.store.as_ref(), ticket).await;
            } else {
                response = idempotency::complete(
                    self.store.as_ref(),
                    &self.idempotency,
                    ticket,
                    response,
                    self.forward.request_timeout,
                    now,
                )
                .await?;
            }
        }
        if admitted.counted {
            if failed {
                // Not charged, so not counted.
                self.limiter.refund_request(&key.org_id, &key.id);
                admitted.counted = false;
            } else {
                self.limiter
                    .record(&key.org_id, &key.id, org_entry.cycle_anchor, &usage, now);
                response = self.meter_bytes(response, &key.org_id, &key.id, org_entry.cycle_anchor);
            }
        }
        Ok(response)
    }

    /// Step 10 and the metering part of step 11: sends the request, cleans
    /// the answer for the client, and reads its `Tollgate-Usage` and size.
    /// A priced answer of unknown length (chunked) is read, up to the
    /// route's bytes_out maximum, so its size is charged before any of it
    /// is released. Returns the answer, whether it failed (5xx), the usage
    /// it reported and its size.
    async fn forward_and_measure(
        &self,
        request: Request<ProxyBody>,
        context: &Context,
        source: api_key::KeySource,
        peer: &Peer,
        priced: Option<&crate::plans::Plan>,
    ) -> Result<
        (
            Response<ProxyBody>,
            bool,
            tollgate_core::meter::MeterCounts,
            Option<u64>,
        ),
        Refusal,
    > {
        let upstream_request = forward::prepare(request, context, source, peer, &self.forward)?;
        let response = forward::send(&self.client, upstream_request, &self.forward).await?;
        let failed = response.status().is_server_error();
        let usage = usage_report(response.headers());
        let response = forward::respond(response, &context.request_id);
        let declared = http_body::Body::size_hint(response.body()).exact();
        let bytes_priced =
            priced.is_some_and(|plan| plan.prices[Meter::BytesOut.index()].is_some());
        if declared.is_some() || failed || !bytes_priced {
            return Ok((response, failed, usage, declared));
        }
        let limit = self
            .route_max_units
            .get(context.route)
            .map_or(1 << 20, |units| units[Meter::BytesOut.index()]);
        let (response, read) =
            forward::read_prefix(response, limit, self.forward.request_timeout).await?;
        Ok((response, failed, usage, Some(read)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        plan: &crate::plans::Plan,
        hold: tollgate_core::ledger::Hold,
        usage: &tollgate_core::meter::MeterCounts,
        key: &KeyEntry,
        org_entry: &OrgEntry,
        request_id: &str,
        now: tollgate_core::time::UnixMillis,
    ) -> Result<(), Refusal> {
        let anchor = org_entry.cycle_anchor;
        let charge = self
            .accounts
            .price(&key.org_id, anchor, &plan.prices, usage, now);
        let units: serde_json::Map<String, serde_json::Value> = Meter::ALL
            .into_iter()
            .filter(|m| usage[m.index()] > 0)
            .map(|m| {
                (
                    m.as_str().to_owned(),
                    serde_json::Value::from(usage[m.index()]),
                )
            })
            .collect();
        let detail = serde_json::json!({ "units": units, "request_id": request_id, "key_id": key.id.as_str() });
        // The reference is made here, never taken from the client, so no
        // client-chosen id can make two charges collide.
        let entry = tollgate_store::NewEntry {
            org_id: key.org_id.clone(),
            kind: tollgate_store::EntryKind::Charge,
            amount: -charge.0,
            reference: format!("charge:{}", uuid::Uuid::now_v7()),
            detail: detail.to_string(),
            created_at: now,
        };
        if self.durability == crate::config::Durability::Relaxed {
            // store.durability = "relaxed": the answer waits for the entry to
            // be queued (bounded), not for it to be written.
            if let Err(error) = self.ledger.submit(entry).await {
                tracing::error!(%error, request_id, "could not queue a charge (relaxed durability)");
            }
        } else if let Err(error) = self.ledger.post(entry).await {
            tracing::error!(%error, request_id, "could not record a charge");
            self.accounts.unprice(&key.org_id, usage, now);
            self.accounts.void(&key.org_id, hold, now);
            return Err(Refusal::new(
                tollgate_core::Rejection::StoreUnavailable,
                "the upstream answered but its charge could not be recorded; a retry with the same Idempotency-Key waits until the key's lock lapses",
            ));
        }
        let settled = self.accounts.settle(&key.org_id, anchor, hold, charge, now);
        if let Some(settings) = self.accounts.autocharge_due(&key.org_id, settled.balance) {
            // From the request path, not a poll; returns at once.
            self.autocharger
                .after_charge(&key.org_id, &settings, settled.balance);
        }
        for threshold in settled.crossed {
            let reference = format!("budget:{}:{threshold}", settled.cycle.start.0);
            let detail = serde_json::json!({
                "threshold_percent": threshold,
                "cycle_start": settled.cycle.start.to_rfc3339(),
                "read_only": threshold >= 100,
            })
            .to_string();
            if let Err(error) = self
                .store
                .add_notification(&key.org_id, "budget_threshold", &reference, &detail, now)
                .await
            {
                tracing::warn!(%error, "could not record a budget notification");
            }
        }
        Ok(())
    }

    fn meter_bytes(
        &self,
        response: Response<ProxyBody>,
        org_id: &tollgate_core::ids::OrgId,
        key_id: &tollgate_core::ids::KeyId,
        anchor: tollgate_core::time::UnixMillis,
    ) -> Response<ProxyBody> {
        let limiter = Arc::clone(&self.limiter);
        let clock = Arc::clone(&self.clock);
        let (org_id, key_id) = (org_id.clone(), key_id.clone());
        response.map(move |body| {
            MeteredBody::new(
                body,
                Box::new(move |bytes| {
                    let mut counts = [0u64; METERS];
                    counts[Meter::BytesOut.index()] = bytes;
                    limiter.record(&org_id, &key_id, anchor, &counts, clock.now());
                }),
            )
            .boxed()
        })
    }
}

fn spend_refusal(refusal: SpendRefusal, now: tollgate_core::time::UnixMillis) -> Refusal {
    let (rejection, detail, resets_at) = match refusal {
        SpendRefusal::DailyLimit { limit, resets_at } => (
            tollgate_core::Rejection::DailySpendLimit,
            format!(
                "today's spend reached the daily limit of {}; it resets at {}",
                tollgate_core::money::Micros(limit),
                resets_at.to_rfc3339()
            ),
            resets_at,
        ),
        SpendRefusal::PaymentActionRequired => {
            return Refusal::new(
                tollgate_core::Rejection::PaymentActionRequired,
                "an automatic top-up needs the customer's action (authentication); write routes are refused until it is resolved",
            );
        }
        SpendRefusal::BudgetReadOnly { budget, resets_at } => (
            tollgate_core::Rejection::BudgetReadOnly,
            format!(
                "the budget of {} for this billing cycle is used up: the organization is read-only until {} or until the budget is raised",
                tollgate_core::money::Micros(budget),
                resets_at.to_rfc3339()
            ),
            resets_at,
        ),
    };
    let seconds = u64::try_from((resets_at.0 - now.0).max(0))
        .unwrap_or(0)
        .div_ceil(1000)
        .max(1);
    Refusal::new(rejection, detail)
        .with_header(throttle::RETRY_AFTER.clone(), HeaderValue::from(seconds))
}

/// The request body: still streaming, or read whole (step 4 read it to check
/// a signature, so that later steps and the upstream see the same bytes).
enum RequestBody {
    Streaming(Incoming),
    Buffered(bytes::Bytes),
}

impl RequestBody {
    fn buffered(&self) -> Option<&[u8]> {
        match self {
            RequestBody::Buffered(bytes) => Some(bytes),
            RequestBody::Streaming(_) => None,
        }
    }

    fn into_proxy_body(self, limit: u64) -> ProxyBody {
        match self {
            RequestBody::Streaming(body) => forward::streamed(body, limit),
            RequestBody::Buffered(bytes) => forward::full(bytes),
        }
    }
}

/// The throttle step's result carried through the later steps.
struct Admitted {
    rate_headers: Vec<(HeaderName, HeaderValue)>,
    /// The request count was taken and must be given back if the request
    /// does not end in a forwarded, non-5xx answer.
    counted: bool,
}

fn usage_report(headers: &http::HeaderMap) -> tollgate_core::meter::MeterCounts {
    let Some(value) = headers.get(&TOLLGATE_USAGE) else {
        return [0; METERS];
    };
    match tollgate_core::usage::parse(value.as_bytes()) {
        Ok(report) => {
            if !report.ignored.is_empty() {
                tracing::debug!(ignored = ?report.ignored, "Tollgate-Usage members ignored");
            }
            report.counts
        }
        Err(error) => {
            tracing::warn!(%error, "upstream sent an unreadable Tollgate-Usage");
            [0; METERS]
        }
    }
}

fn with_request_id(mut response: Response<ProxyBody>, request_id: &str) -> Response<ProxyBody> {
    forward::set_request_id(response.headers_mut(), request_id);
    response
}

/// A refusal as a problem+json response.
pub fn problem_response(refusal: Refusal, request_id: &str) -> Response<ProxyBody> {
    let mut problem = Problem::from_rejection(refusal.rejection, refusal.detail, request_id);
    problem.violated_policies = refusal.violated;
    let (status, mut headers, body) = problem.into_parts();
    for (name, value) in refusal.headers {
        headers.insert(name, value);
    }
    let mut response = Response::new(forward::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
