//! Route matching: which configured route, and so which product and route
//! class, a request's method and path belong to.
//!
//! Patterns are paths whose segments are literals, `{name}` (exactly one
//! non-empty segment) or, last only, `{*name}` (the rest of the path, possibly
//! empty). Routes are tried in configuration order and the first whose pattern
//! and method both match wins, so an operator puts specific routes before
//! general ones. Paths are matched as sent, without percent-decoding.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a route demands an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdempotencyMode {
    /// Every request must carry a key (the default for write routes).
    Required,
    /// A key is honoured when sent.
    Optional,
    /// Keys are ignored and forwarded as any header (the default for reads).
    Off,
}

/// Whether a route reads or writes. Budgets and idempotency treat them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteClass {
    /// Market data, account reads: safe to repeat.
    Read,
    /// Orders, cancels, transfers: changes state at the upstream.
    Write,
}

impl RouteClass {
    /// The class as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Write => "write",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    Tail,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

/// Why a path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns are absolute paths.
    #[error("pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    /// A `{...}` segment whose name is empty or not `[A-Za-z0-9_]`.
    #[error("pattern {0:?} has a malformed parameter segment {1:?}")]
    BadParameter(String, String),
    /// `{*rest}` anywhere but last.
    #[error("pattern {0:?}: a {{*tail}} segment must be the last one")]
    TailNotLast(String),
    /// A literal with a brace in it is almost certainly a typo.
    #[error("pattern {0:?} has a brace inside the literal segment {1:?}")]
    StrayBrace(String, String),
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl PathPattern {
    /// Compiles a pattern such as `/v1/orders/{id}`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| PatternError::NotAbsolute(text.to_owned()))?;
        let mut segments = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let segment =
                if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    match inner.strip_prefix('*') {
                        Some(name) if is_param_name(name) => Segment::Tail,
                        None if is_param_name(inner) => Segment::Param,
                        _ => return Err(PatternError::BadParameter(text.into(), (*part).into())),
                    }
                } else if *part == "*" {
                    Segment::Tail
                } else if part.contains(['{', '}']) {
                    return Err(PatternError::StrayBrace(text.into(), (*part).into()));
                } else {
                    Segment::Literal((*part).to_owned())
                };
            if segment == Segment::Tail && i + 1 != parts.len() {
                return Err(PatternError::TailNotLast(text.into()));
            }
            segments.push(segment);
        }
        Ok(PathPattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as configured; used as the route's name in metrics.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does `path` (without its query) match?
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        let mut remaining = !rest.is_empty();
        for segment in &self.segments {
            match segment {
                Segment::Tail => return true,
                Segment::Literal(lit) => match parts.next() {
                    Some(p) if remaining && p == lit => {}
                    _ => return false,
                },
                Segment::Param => match parts.next() {
                    Some(p) if remaining && !p.is_empty() => {}
                    _ => return false,
                },
            }
        }
        if !remaining {
            return true;
        }
        remaining = parts.next().is_some();
        !remaining
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One configured route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The path pattern.
    pub pattern: PathPattern,
    /// Upper-case methods; empty means any method.
    pub methods: Vec<String>,
    /// The product this route belongs to.
    pub product: String,
    /// Read or write.
    pub class: RouteClass,
    /// Token-bucket cost of one request, unless the plan overrides it.
    pub cost: u64,
    /// Whether `Idempotency-Key` is required, honoured or ignored.
    pub idempotency: IdempotencyMode,
}

impl Route {
    fn allows(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}

/// The outcome of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteLookup {
    /// The index of the first route matching path and method.
    Matched(usize),
    /// The path matches some routes but none allows this method; these do.
    MethodNotAllowed(Vec<String>),
    /// No route's pattern matches the path.
    NotFound,
}

/// Routes in configuration order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds a table; routes keep their order.
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable { routes }
    }

    /// The route at `index`, as returned by [`RouteTable::lookup`].
    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// All routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for `method` and `path`.
    pub fn lookup(&self, method: &str, path: &str) -> RouteLookup {
        let mut allowed: Vec<String> = Vec::new();
        let mut path_known = false;
        for (i, route) in self.routes.iter().enumerate() {
            if !route.pattern.matches(path) {
                continue;
            }
            if route.allows(method) {
                return RouteLookup::Matched(i);
            }
            path_known = true;
            for m in &route.methods {
                if !allowed.contains(m) {
                    allowed.push(m.clone());
                }
            }
        }
        if path_known {
            RouteLookup::MethodNotAllowed(allowed)
        } else {
            RouteLookup::NotFound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> PathPattern {
        PathPattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn literal_param_and_tail_segments() {
        assert!(p("/v1/ticker").matches("/v1/ticker"));
        assert!(!p("/v1/ticker").matches("/v1/ticker/"));
        assert!(!p("/v1/ticker").matches("/v1/tickers"));
        assert!(!p("/v1/ticker").matches("/v1"));
        assert!(p("/v1/orders/{id}").matches("/v1/orders/42"));
        assert!(!p("/v1/orders/{id}").matches("/v1/orders/"));
        assert!(!p("/v1/orders/{id}").matches("/v1/orders/42/fills"));
        assert!(p("/v1/{*rest}").matches("/v1/a/b/c"));
        assert!(p("/v1/{*rest}").matches("/v1/"));
        assert!(p("/v1/*").matches("/v1/x"));
        assert!(!p("/v1/{*rest}").matches("/v2/a"));
        assert!(p("/").matches("/"));
        assert!(!p("/").matches("/x"));
        assert!(p("/{*all}").matches("/anything/at/all"));
        assert!(!p("/v1/ticker").matches("v1/ticker"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert!(matches!(
            PathPattern::parse("v1"),
            Err(PatternError::NotAbsolute(_))
        ));
        assert!(matches!(
            PathPattern::parse("/v1/{}"),
            Err(PatternError::BadParameter(..))
        ));
        assert!(matches!(
            PathPattern::parse("/v1/{a-b}"),
            Err(PatternError::BadParameter(..))
        ));
        assert!(matches!(
            PathPattern::parse("/{*a}/b"),
            Err(PatternError::TailNotLast(_))
        ));
        assert!(matches!(
            PathPattern::parse("/v1/x{y"),
            Err(PatternError::StrayBrace(..))
        ));
    }

    fn route(path: &str, methods: &[&str], product: &str) -> Route {
        Route {
            pattern: p(path),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            product: product.into(),
            class: RouteClass::Read,
            cost: 1,
            idempotency: IdempotencyMode::Off,
        }
    }

    #[test]
    fn first_match_wins_and_methods_are_reported() {
        let table = RouteTable::new(vec![
            route("/v1/orders/open", &["GET"], "a"),
            route("/v1/orders/{id}", &["GET", "DELETE"], "b"),
            route("/v1/orders", &["POST"], "c"),
            route("/any", &[], "d"),
        ]);
        assert_eq!(
            table.lookup("GET", "/v1/orders/open"),
            RouteLookup::Matched(0)
        );
        assert_eq!(
            table.lookup("DELETE", "/v1/orders/open"),
            RouteLookup::Matched(1)
        );
        assert_eq!(table.lookup("GET", "/v1/orders/9"), RouteLookup::Matched(1));
        assert_eq!(
            table.lookup("GET", "/v1/orders"),
            RouteLookup::MethodNotAllowed(vec!["POST".into()])
        );
        assert_eq!(table.lookup("PATCH", "/any"), RouteLookup::Matched(3));
        assert_eq!(table.lookup("GET", "/nope"), RouteLookup::NotFound);
    }
}
