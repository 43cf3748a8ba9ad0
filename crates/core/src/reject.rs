//! Every reason the gateway refuses a request, with its stable `code`.
//!
//! The codes are a public contract: clients branch on them, so a code is never
//! renamed or reused. `docs/errors.md` lists each one; a test checks that the
//! list and this enum agree.

/// A refusal. `code()` is what clients see in the problem+json body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The path matches no configured route.
    RouteNotFound,
    /// The path matches a route, but not with this method.
    MethodNotAllowed,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The request's header section is larger than the configured limit.
    HeaderTooLarge,
    /// No API key in `Authorization: Bearer` or `X-API-Key`.
    MissingApiKey,
    /// Malformed key, unknown key id or wrong secret: one answer for all three.
    InvalidApiKey,
    /// The key was revoked.
    ApiKeyRevoked,
    /// The key is past its expiry.
    ApiKeyExpired,
    /// The key's organization is suspended.
    OrgSuspended,
    /// The key's policy demands a signed request and none was sent.
    SignatureRequired,
    /// The signature does not match the request (or its headers are malformed).
    BadSignature,
    /// The signed timestamp is too far from the gateway's clock.
    TimestampOutOfWindow,
    /// The same signature was already accepted within its window.
    ReplayedRequest,
    /// The key's policy demands a JWT and none was sent.
    TokenRequired,
    /// The JWT's shape, algorithm, signature, issuer, audience or claims are not accepted.
    InvalidToken,
    /// The JWT's `exp` has passed.
    TokenExpired,
    /// The JWT's `nbf` is in the future.
    TokenNotYetValid,
    /// The JWT's organization claim does not name the key's organization.
    TokenOrgMismatch,
    /// No client certificate, or not the one the key or token is bound to.
    CertificateMismatch,
    /// The key is not allowed to call this route's product.
    ProductNotAllowed,
    /// The organization's plan does not open this route's product.
    ProductNotInPlan,
    /// Today's spend reached the organization's daily threshold.
    DailySpendLimit,
    /// The cycle's budget is used up: write routes are refused.
    BudgetReadOnly,
    /// The account does not cover the request's maximum cost.
    PaymentRequired,
    /// A payment needs the customer's action (3-D Secure): writes are refused.
    PaymentActionRequired,
    /// A token bucket (the key's or the organization's) is empty.
    RateLimited,
    /// A billing-cycle quota is exhausted and the org is not pay-as-you-go.
    QuotaExhausted,
    /// The route requires an `Idempotency-Key` and none was sent.
    IdempotencyKeyRequired,
    /// The `Idempotency-Key` is not 1 to 255 printable ASCII characters.
    IdempotencyKeyInvalid,
    /// A request with this key is still running.
    IdempotencyInFlight,
    /// The key was already used for a different request.
    IdempotencyKeyMismatch,
    /// The request body could not be read (the client stopped sending).
    RequestBodyUnreadable,
    /// The store failed, so the request could not be made safe to run.
    StoreUnavailable,
    /// The upstream refused the connection or failed mid-request.
    UpstreamUnavailable,
    /// The upstream did not answer within the configured timeout.
    UpstreamTimeout,
}

impl Rejection {
    /// Every rejection, for documentation checks and metrics pre-registration.
    pub const ALL: [Rejection; 35] = [
        Rejection::RouteNotFound,
        Rejection::MethodNotAllowed,
        Rejection::PayloadTooLarge,
        Rejection::HeaderTooLarge,
        Rejection::MissingApiKey,
        Rejection::InvalidApiKey,
        Rejection::ApiKeyRevoked,
        Rejection::ApiKeyExpired,
        Rejection::OrgSuspended,
        Rejection::SignatureRequired,
        Rejection::BadSignature,
        Rejection::TimestampOutOfWindow,
        Rejection::ReplayedRequest,
        Rejection::TokenRequired,
        Rejection::InvalidToken,
        Rejection::TokenExpired,
        Rejection::TokenNotYetValid,
        Rejection::TokenOrgMismatch,
        Rejection::CertificateMismatch,
        Rejection::ProductNotAllowed,
        Rejection::ProductNotInPlan,
        Rejection::DailySpendLimit,
        Rejection::BudgetReadOnly,
        Rejection::PaymentRequired,
        Rejection::PaymentActionRequired,
        Rejection::RateLimited,
        Rejection::QuotaExhausted,
        Rejection::IdempotencyKeyRequired,
        Rejection::IdempotencyKeyInvalid,
        Rejection::IdempotencyInFlight,
        Rejection::IdempotencyKeyMismatch,
        Rejection::RequestBodyUnreadable,
        Rejection::StoreUnavailable,
        Rejection::UpstreamUnavailable,
        Rejection::UpstreamTimeout,
    ];

    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::RouteNotFound => "route_not_found",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::HeaderTooLarge => "request_header_too_large",
            Rejection::MissingApiKey => "missing_api_key",
            Rejection::InvalidApiKey => "invalid_api_key",
            Rejection::ApiKeyRevoked => "api_key_revoked",
            Rejection::ApiKeyExpired => "api_key_expired",
            Rejection::OrgSuspended => "org_suspended",
            Rejection::SignatureRequired => "signature_required",
            Rejection::BadSignature => "bad_signature",
            Rejection::TimestampOutOfWindow => "timestamp_out_of_window",
            Rejection::ReplayedRequest => "replayed_request",
            Rejection::TokenRequired => "token_required",
            Rejection::InvalidToken => "invalid_token",
            Rejection::TokenExpired => "token_expired",
            Rejection::TokenNotYetValid => "token_not_yet_valid",
            Rejection::TokenOrgMismatch => "token_org_mismatch",
            Rejection::CertificateMismatch => "certificate_mismatch",
            Rejection::ProductNotAllowed => "product_not_allowed",
            Rejection::ProductNotInPlan => "product_not_in_plan",
            Rejection::DailySpendLimit => "daily_spend_limit",
            Rejection::BudgetReadOnly => "budget_read_only",
            Rejection::PaymentRequired => "payment_required",
            Rejection::PaymentActionRequired => "payment_action_required",
            Rejection::RateLimited => "rate_limited",
            Rejection::QuotaExhausted => "quota_exhausted",
            Rejection::IdempotencyKeyRequired => "idempotency_key_required",
            Rejection::IdempotencyKeyInvalid => "idempotency_key_invalid",
            Rejection::IdempotencyInFlight => "idempotency_in_flight",
            Rejection::IdempotencyKeyMismatch => "idempotency_key_mismatch",
            Rejection::RequestBodyUnreadable => "request_body_unreadable",
            Rejection::StoreUnavailable => "store_unavailable",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The HTTP status that carries it.
    pub fn status(self) -> u16 {
        match self {
            Rejection::RouteNotFound => 404,
            Rejection::MethodNotAllowed => 405,
            Rejection::PayloadTooLarge => 413,
            Rejection::HeaderTooLarge => 431,
            Rejection::MissingApiKey
            | Rejection::SignatureRequired
            | Rejection::BadSignature
            | Rejection::TimestampOutOfWindow
            | Rejection::ReplayedRequest
            | Rejection::TokenRequired
            | Rejection::InvalidToken
            | Rejection::TokenExpired
            | Rejection::TokenNotYetValid
            | Rejection::TokenOrgMismatch
            | Rejection::CertificateMismatch
            | Rejection::InvalidApiKey => 401,
            Rejection::ApiKeyRevoked
            | Rejection::ApiKeyExpired
            | Rejection::OrgSuspended
            | Rejection::ProductNotAllowed
            | Rejection::ProductNotInPlan => 403,
            Rejection::DailySpendLimit
            | Rejection::PaymentRequired
            | Rejection::PaymentActionRequired => 402,
            Rejection::BudgetReadOnly => 403,
            Rejection::RateLimited | Rejection::QuotaExhausted => 429,
            Rejection::IdempotencyKeyRequired
            | Rejection::IdempotencyKeyInvalid
            | Rejection::RequestBodyUnreadable => 400,
            Rejection::IdempotencyInFlight => 409,
            Rejection::IdempotencyKeyMismatch => 422,
            Rejection::StoreUnavailable => 503,
            Rejection::UpstreamUnavailable => 502,
            Rejection::UpstreamTimeout => 504,
        }
    }

    /// A short human title; the same for every occurrence of the code.
    pub fn title(self) -> &'static str {
        match self {
            Rejection::RouteNotFound => "No route matches this path",
            Rejection::MethodNotAllowed => "Method not allowed on this route",
            Rejection::PayloadTooLarge => "Request body too large",
            Rejection::HeaderTooLarge => "Request header section too large",
            Rejection::MissingApiKey => "API key missing",
            Rejection::InvalidApiKey => "API key invalid",
            Rejection::ApiKeyRevoked => "API key revoked",
            Rejection::ApiKeyExpired => "API key expired",
            Rejection::OrgSuspended => "Organization suspended",
            Rejection::SignatureRequired => "Request signature required",
            Rejection::BadSignature => "Request signature invalid",
            Rejection::TimestampOutOfWindow => "Request timestamp outside the window",
            Rejection::ReplayedRequest => "Request signature already used",
            Rejection::TokenRequired => "Token required",
            Rejection::InvalidToken => "Token invalid",
            Rejection::TokenExpired => "Token expired",
            Rejection::TokenNotYetValid => "Token not yet valid",
            Rejection::TokenOrgMismatch => "Token issued for another organization",
            Rejection::CertificateMismatch => "Client certificate mismatch",
            Rejection::ProductNotAllowed => "Product not allowed for this key",
            Rejection::ProductNotInPlan => "Product not included in the plan",
            Rejection::DailySpendLimit => "Daily spend limit reached",
            Rejection::BudgetReadOnly => "Budget exhausted: read-only",
            Rejection::PaymentRequired => "Payment required",
            Rejection::PaymentActionRequired => "Payment needs the customer's action",
            Rejection::RateLimited => "Rate limit exceeded",
            Rejection::QuotaExhausted => "Quota exhausted",
            Rejection::IdempotencyKeyRequired => "Idempotency-Key required",
            Rejection::IdempotencyKeyInvalid => "Idempotency-Key invalid",
            Rejection::IdempotencyInFlight => "Request with this Idempotency-Key in progress",
            Rejection::IdempotencyKeyMismatch => "Idempotency-Key reused for a different request",
            Rejection::RequestBodyUnreadable => "Request body unreadable",
            Rejection::StoreUnavailable => "Store unavailable",
            Rejection::UpstreamUnavailable => "Upstream unavailable",
            Rejection::UpstreamTimeout => "Upstream timed out",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let codes: HashSet<_> = Rejection::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Rejection::ALL.len());
        for code in codes {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn statuses_are_client_or_gateway_errors() {
        for r in Rejection::ALL {
            assert!((400..600).contains(&r.status()), "{r:?}");
        }
    }
}
