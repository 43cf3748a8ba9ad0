//! Charging a customer's saved payment method: the [`PaymentProvider`] trait
//! and its Stripe implementation (PaymentIntents, created and confirmed off
//! session in one call, with an `Idempotency-Key` so a retry never charges
//! twice).

use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

/// One off-session charge.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The provider's customer id.
    pub customer: String,
    /// The saved payment method.
    pub payment_method: String,
    /// Amount in micro-units of `currency`.
    pub amount_micros: i64,
    /// ISO 4217, lower case.
    pub currency: String,
    /// Sent as `Idempotency-Key`: the same key never charges twice.
    pub idempotency_key: String,
    /// Shown in the provider's dashboard.
    pub description: String,
}

/// How a charge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Money moved; the provider's payment id.
    Succeeded(String),
    /// The payment method was refused (e.g. `card_declined`).
    Declined(String),
    /// The customer must act (3-D Secure); the payment id if there is one.
    RequiresAction(Option<String>),
}

/// Why a charge could not be attempted or its outcome is unknown; retrying
/// with the same idempotency key is safe.
#[derive(Debug, thiserror::Error)]
#[error("payment provider error: {0}")]
pub struct ProviderError(pub String);

/// Charges saved payment methods.
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges `request`, idempotently by its key.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderError>;
}

/// Stripe's PaymentIntents API.
pub struct StripeProvider {
    base: String,
    secret_key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("StripeProvider")
            .field("base", &self.base)
            .finish()
    }
}

impl StripeProvider {
    /// `base` is `https://api.stripe.com` in production; `timeout` bounds
    /// each call (an answer that does not come is an unknown outcome).
    pub fn new(base: &str, secret_key: &str, timeout: Duration) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ProviderError(e.to_string()))?;
        Ok(StripeProvider {
            base: base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
            http,
        })
    }
}

/// Stripe amounts are in the currency's smallest unit; for two-decimal
/// currencies (USD, EUR, GBP, …) that is 10,000 micro-units.
pub const MICROS_PER_MINOR_UNIT: i64 = 10_000;

fn form_encode(pairs: &[(&str, String)]) -> String {
    fn encode(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(char::from(b))
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderError> {
        if request.amount_micros <= 0 || request.amount_micros % MICROS_PER_MINOR_UNIT != 0 {
            return Err(ProviderError(format!(
                "amount {} micro-units is not a whole number of cents",
                request.amount_micros
            )));
        }
        let body = form_encode(&[
            (
                "amount",
                (request.amount_micros / MICROS_PER_MINOR_UNIT).to_string(),
            ),
            ("currency", request.currency.clone()),
            ("customer", request.customer.clone()),
            ("payment_method", request.payment_method.clone()),
            ("confirm", "true".into()),
            ("off_session", "true".into()),
            ("description", request.description.clone()),
        ]);
        let response = self
            .http
            .post(format!("{}/v1/payment_intents", self.base))
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", &request.idempotency_key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError(e.to_string()))?;
        let status = response.status();
        let json: Value = response
            .json()
            .await
            .map_err(|e| ProviderError(e.to_string()))?;
        if status.is_success() {
            let id = json["id"].as_str().unwrap_or_default().to_owned();
            return Ok(match json["status"].as_str() {
                Some("succeeded") => ChargeOutcome::Succeeded(id),
                Some("requires_action") => ChargeOutcome::RequiresAction(Some(id)),
                Some("requires_payment_method") => {
                    ChargeOutcome::Declined("requires_payment_method".into())
                }
                other => {
                    return Err(ProviderError(format!(
                        "unexpected PaymentIntent status {other:?}"
                    )));
                }
            });
        }
        let error = &json["error"];
        let code = error["code"].as_str().unwrap_or_default();
        let intent = error["payment_intent"]["id"].as_str().map(str::to_owned);
        match (status.as_u16(), error["type"].as_str(), code) {
            (_, _, "authentication_required") => Ok(ChargeOutcome::RequiresAction(intent)),
            (402, Some("card_error"), _) => Ok(ChargeOutcome::Declined(
                error["decline_code"].as_str().unwrap_or(code).to_owned(),
            )),
            _ => Err(ProviderError(format!(
                "HTTP {status}: {} {}",
                error["type"].as_str().unwrap_or("?"),
                error["message"].as_str().unwrap_or("")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_percent_encoded() {
        let body = form_encode(&[
            ("description", "tollgate top-up: org_x & co".into()),
            ("amount", "2500".into()),
        ]);
        assert_eq!(
            body,
            "description=tollgate+top-up%3A+org_x+%26+co&amount=2500"
        );
    }
}
