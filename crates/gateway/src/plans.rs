//! Plans compiled from configuration for the request path: product scope,
//! rate classes as bucket specs, the org bucket, quotas per meter, and costs
//! per route.

use crate::config::{Config, RateConfig};
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::access::ProductScope;
use tollgate_core::limit::BucketSpec;
use tollgate_core::meter::{METERS, Meter};
use tollgate_core::pricing::Schedule;
use tollgate_core::route::{Route, RouteTable};

/// A plan ready for decisions.
#[derive(Debug, Clone)]
pub struct Plan {
    /// As named in configuration.
    pub name: String,
    /// Products it opens; `None` opens all.
    pub products: Option<ProductScope>,
    /// Key buckets by rate class name.
    pub classes: HashMap<String, RateClass>,
    /// The default rate class.
    pub default_class: Option<String>,
    /// The default class, resolved once.
    default: Option<RateClass>,
    /// The organization's aggregate bucket.
    pub org_bucket: Option<BucketSpec>,
    /// Cycle quota per meter; `None` is unlimited.
    pub quotas: [Option<u64>; METERS],
    /// Graduated price per meter; `None` is free.
    pub prices: [Option<Schedule>; METERS],
    /// Per route index: method-specific and general cost overrides.
    costs: Vec<RouteCosts>,
}

#[derive(Debug, Clone, Default)]
struct RouteCosts {
    by_method: Vec<(String, u64)>,
    any_method: Option<u64>,
}

fn spec(rate: &RateConfig) -> Option<BucketSpec> {
    BucketSpec::new(rate.rate, rate.per_seconds, rate.burst)
}

impl Plan {
    /// The bucket cost of a request to `route` (index `index`) with `method`.
    pub fn cost(&self, index: usize, route: &Route, method: &str) -> u64 {
        let Some(costs) = self.costs.get(index) else {
            return route.cost;
        };
        costs
            .by_method
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, c)| *c)
            .or(costs.any_method)
            .unwrap_or(route.cost)
    }

    /// The rate class for a request: the one a credential asked for if the
    /// plan has it, else the plan's default.
    ///
    /// This is the hook for credential-derived classes: the JWT step maps a
    /// claim (e.g. `tier=premium`) to a class name and passes it here;
    /// unknown names fall back to the default.
    pub fn rate_class(&self, requested: Option<&str>) -> Option<&RateClass> {
        if let Some(class) = requested.and_then(|r| self.classes.get(r)) {
            return Some(class);
        }
        self.default.as_ref()
    }

    /// Does this plan limit anything? Unlimited plans skip throttling and
    /// send no RateLimit headers.
    pub fn is_metered(&self) -> bool {
        !self.classes.is_empty()
            || self.org_bucket.is_some()
            || self.quotas.iter().any(Option::is_some)
            || self.is_priced()
    }

    /// Does this plan charge pay-as-you-go organizations for anything?
    pub fn is_priced(&self) -> bool {
        self.prices.iter().any(Option::is_some)
    }
}

/// A rate class: its name (shared, so reports need not copy it) and bucket.
#[derive(Debug, Clone)]
pub struct RateClass {
    /// As configured.
    pub name: Arc<str>,
    /// The key bucket.
    pub spec: BucketSpec,
}

/// All configured plans by name.
pub type Plans = HashMap<String, Arc<Plan>>;

/// Compiles the plans of a validated configuration.
pub fn compile(config: &Config, routes: &RouteTable) -> Plans {
    config
        .plans
        .iter()
        .map(|(name, plan)| {
            let mut quotas = [None; METERS];
            for (meter, limit) in &plan.quotas {
                if let Some(meter) = Meter::parse(meter) {
                    quotas[meter.index()] = Some(*limit);
                }
            }
            let mut prices: [Option<Schedule>; METERS] = Default::default();
            for (meter, price) in &plan.prices {
                if let (Some(meter), Ok(schedule)) = (Meter::parse(meter), price.schedule()) {
                    prices[meter.index()] = Some(schedule);
                }
            }
            let mut costs = vec![RouteCosts::default(); routes.routes().len()];
            for (target, cost) in &plan.costs {
                let (method, pattern) = crate::config::cost_target(target);
                for (i, route) in routes.routes().iter().enumerate() {
                    if route.pattern.as_str() != pattern {
                        continue;
                    }
                    match &method {
                        Some(m) => costs[i].by_method.push((m.clone(), *cost)),
                        None => costs[i].any_method = Some(*cost),
                    }
                }
            }
            let classes: HashMap<String, RateClass> = plan
                .rate_classes
                .iter()
                .filter_map(|(class, rate)| {
                    spec(rate).map(|spec| {
                        (
                            class.clone(),
                            RateClass {
                                name: Arc::from(class.as_str()),
                                spec,
                            },
                        )
                    })
                })
                .collect();
            let compiled = Plan {
                name: name.clone(),
                products: config.plan_scope(name),
                classes: classes.clone(),
                default: plan
                    .default_rate_class
                    .as_ref()
                    .and_then(|d| classes.get(d).cloned()),
                default_class: plan.default_rate_class.clone(),
                org_bucket: plan.org_rate.as_ref().and_then(spec),
                quotas,
                prices,
                costs,
            };
            (name.clone(), Arc::new(compiled))
        })
        .collect()
}
