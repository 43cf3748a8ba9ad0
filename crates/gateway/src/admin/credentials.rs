//! A key's credentials: its policy (`PUT /admin/v1/keys/{id}/credentials`),
//! signing secrets (`POST …/signing-secrets`, shown once) and certificate
//! pins (`POST …/certificate-pins`, `DELETE …/certificate-pins/{thumbprint}`).
//!
//! Rotation keeps the replaced secrets (or pins) valid for an overlap, so
//! clients can move over without a failed request. Expired ones are dropped
//! on the next change.

use super::keys::{KeyView, found, parse_key_id};
use super::{AdminError, AdminResult, AdminState, optional_json, overlap_seconds};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use tollgate_core::access::KeyStatus;
use tollgate_core::credential::{ClassSet, CredentialPolicy, parse_thumbprint};
use tollgate_core::time::UnixMillis;
use tollgate_store::{CertificatePin, KeyCredentials, KeyRow, SealedSecret};

/// A signing secret as listed: never the secret itself.
#[derive(Debug, Serialize)]
pub(crate) struct SecretView {
    id: String,
    created_at: String,
    expires_at: Option<String>,
}

/// A certificate pin as listed.
#[derive(Debug, Serialize)]
pub(crate) struct PinView {
    /// Hex SHA-256 of the certificate's DER.
    thumbprint: String,
    /// The same, as RFC 8705 `x5t#S256` (base64url).
    #[serde(rename = "x5t#S256")]
    x5t_s256: String,
    created_at: String,
    expires_at: Option<String>,
}

/// The credentials part of a key's view.
#[derive(Debug, Serialize)]
pub(crate) struct CredentialsView {
    policy: CredentialPolicy,
    signing_secrets: Vec<SecretView>,
    certificate_pins: Vec<PinView>,
}

impl CredentialsView {
    pub(crate) fn of(credentials: &KeyCredentials, now: UnixMillis) -> Self {
        let live = |end: Option<i64>| end.is_none_or(|e| now.0 < e);
        CredentialsView {
            policy: credentials.policy,
            signing_secrets: credentials
                .signing_secrets
                .iter()
                .filter(|s| live(s.expires_at))
                .map(|s| SecretView {
                    id: s.id.clone(),
                    created_at: UnixMillis(s.created_at).to_rfc3339(),
                    expires_at: s.expires_at.map(|e| UnixMillis(e).to_rfc3339()),
                })
                .collect(),
            certificate_pins: credentials
                .certificate_pins
                .iter()
                .filter(|p| live(p.expires_at))
                .filter_map(|p| {
                    let t = parse_thumbprint(&p.thumbprint)?;
                    Some(PinView {
                        thumbprint: hex::encode(t),
                        x5t_s256: tollgate_core::credential::x5t_s256(&t),
                        created_at: UnixMillis(p.created_at).to_rfc3339(),
                        expires_at: p.expires_at.map(|e| UnixMillis(e).to_rfc3339()),
                    })
                })
                .collect(),
        }
    }
}

/// A newly made signing secret: shown once.
#[derive(Debug, Serialize)]
pub(crate) struct NewSecret {
    /// `ss_…`
    pub(crate) secret_id: String,
    /// Base64; the HMAC key is its decoded bytes. Not shown again.
    pub(crate) signing_secret: String,
    /// For the Coinbase scheme's `CB-ACCESS-PASSPHRASE`. Not shown again.
    pub(crate) passphrase: String,
}

/// `PUT /admin/v1/keys/{id}/credentials` and the `credentials` member of
/// key creation.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyRequest {
    #[serde(default)]
    signature: Option<ClassSet>,
    #[serde(default)]
    jwt: Option<ClassSet>,
    #[serde(default)]
    certificate: Option<ClassSet>,
}

impl PolicyRequest {
    /// The policy with these changes applied to `current`.
    pub(crate) fn apply(self, current: CredentialPolicy) -> CredentialPolicy {
        CredentialPolicy {
            signature: self.signature.unwrap_or(current.signature),
            jwt: self.jwt.unwrap_or(current.jwt),
            certificate: self.certificate.unwrap_or(current.certificate),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSecretRequest {
    #[serde(default)]
    overlap_seconds: Option<u64>,
    #[serde(default)]
    passphrase: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    thumbprint: String,
    /// Existing pins stop working after `overlap_seconds`.
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    overlap_seconds: Option<u64>,
}

/// The key with its new secret, shown once.
#[derive(Debug, Serialize)]
pub(crate) struct KeyWithNewSecret {
    #[serde(flatten)]
    view: KeyView,
    #[serde(flatten)]
    secret: NewSecret,
}

/// Checks a passphrase given by the user: Coinbase lets users choose one.
fn check_passphrase(passphrase: Option<String>) -> AdminResult<String> {
    match passphrase {
        None => Ok(hex::encode(crate::random::bytes::<12>())),
        Some(p) if (8..=128).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_graphic()) => Ok(p),
        Some(_) => Err(AdminError::invalid(
            "passphrase must be 8 to 128 visible ASCII characters",
        )),
    }
}

/// Makes a secret and seals it for `key_id`.
pub(crate) fn make_secret(
    state: &AdminState,
    key_id: &str,
    passphrase: Option<String>,
    now: UnixMillis,
) -> AdminResult<(SealedSecret, NewSecret)> {
    let provider = state.directory.provider().ok_or_else(|| {
        AdminError::conflict(
            "master_key_missing",
            crate::secrets::SecretError::NoMasterKey.to_string(),
        )
    })?;
    let passphrase = check_passphrase(passphrase)?;
    let id = format!(
        "ss_{}",
        tollgate_core::encoding::base32(&crate::random::bytes::<10>()).to_ascii_lowercase()
    );
    let (sealed, signing_secret) =
        crate::secrets::new_signing_secret(provider.as_ref(), key_id, id.clone(), &passphrase, now)
            .map_err(|e| AdminError::conflict("master_key_missing", e.to_string()))?;
    Ok((
        sealed,
        NewSecret {
            secret_id: id,
            signing_secret,
            passphrase,
        },
    ))
}

/// Refuses a policy that could never be met.
pub(crate) fn check_policy(state: &AdminState, credentials: &KeyCredentials) -> AdminResult<()> {
    let policy = credentials.policy;
    if policy.certificate != ClassSet::None && credentials.certificate_pins.is_empty() {
        return Err(AdminError::invalid(
            "a certificate policy needs a pinned certificate: add certificate_pins",
        ));
    }
    if policy.certificate != ClassSet::None && state.config.ingress.tls.is_none() {
        return Err(AdminError::invalid(
            "a certificate policy needs the TLS listener: configure [ingress.tls]",
        ));
    }
    if policy.jwt != ClassSet::None && state.config.jwt.issuers.is_empty() {
        return Err(AdminError::invalid(
            "a jwt policy needs an issuer: configure [[jwt.issuers]]",
        ));
    }
    if policy.signature != ClassSet::None && credentials.signing_secrets.is_empty() {
        return Err(AdminError::invalid(
            "a signature policy needs a signing secret: POST /admin/v1/keys/{id}/signing-secrets first",
        ));
    }
    Ok(())
}

/// Parses pins given at key creation.
pub(crate) fn parse_pins(texts: &[String], now: UnixMillis) -> AdminResult<Vec<CertificatePin>> {
    texts
        .iter()
        .map(|text| {
            let t = parse_thumbprint(text).ok_or_else(|| {
                AdminError::invalid(format!(
                    "{text:?} is not a SHA-256 thumbprint (64 hex digits, or x5t#S256 base64url)"
                ))
            })?;
            Ok(CertificatePin {
                thumbprint: hex::encode(t),
                created_at: now.0,
                expires_at: None,
            })
        })
        .collect()
}

fn prune(credentials: &mut KeyCredentials, now: UnixMillis) {
    let live = |end: Option<i64>| end.is_none_or(|e| now.0 < e);
    credentials.signing_secrets.retain(|s| live(s.expires_at));
    credentials.certificate_pins.retain(|p| live(p.expires_at));
}

async fn live_key(state: &AdminState, id: &str) -> AdminResult<KeyRow> {
    let id = parse_key_id(id)?;
    let row = found(state.store.get_key(&id).await?, &id)?;
    if row.status == KeyStatus::Revoked {
        return Err(AdminError::conflict(
            "key_revoked",
            "a revoked key's credentials cannot change",
        ));
    }
    Ok(row)
}

async fn save(
    state: &AdminState,
    row: &KeyRow,
    credentials: &KeyCredentials,
) -> AdminResult<KeyRow> {
    let now = state.clock.now();
    let saved = state
        .store
        .set_key_credentials(&row.id, credentials, now)
        .await?
        .ok_or_else(|| AdminError::not_found("key_not_found", format!("no key {}", row.id)))?;
    if let Err(error) = state.directory.put_key(&saved) {
        tracing::error!(key_id = %saved.id, %error, "saved credentials could not be opened");
    }
    Ok(saved)
}

pub(crate) async fn set_policy(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<Json<KeyView>> {
    let request: PolicyRequest = optional_json(&body)?;
    let row = live_key(&state, &id).await?;
    let now = state.clock.now();
    let mut credentials = row.credentials.clone();
    prune(&mut credentials, now);
    credentials.policy = request.apply(credentials.policy);
    check_policy(&state, &credentials)?;
    let saved = save(&state, &row, &credentials).await?;
    tracing::info!(key_id = %saved.id, policy = ?credentials.policy, "credential policy set");
    Ok(Json(KeyView::of_row(&saved, now)))
}

pub(crate) async fn new_signing_secret(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<Json<KeyWithNewSecret>> {
    let request: NewSecretRequest = optional_json(&body)?;
    let overlap = overlap_seconds(&state, request.overlap_seconds)?;
    let row = live_key(&state, &id).await?;
    let now = state.clock.now();
    let mut credentials = row.credentials.clone();
    prune(&mut credentials, now);
    let until = now.plus_seconds(overlap).0;
    for old in &mut credentials.signing_secrets {
        old.expires_at = Some(old.expires_at.map_or(until, |e| e.min(until)));
    }
    let (sealed, secret) = make_secret(&state, row.id.as_str(), request.passphrase, now)?;
    credentials.signing_secrets.push(sealed);
    prune(&mut credentials, now);
    let saved = save(&state, &row, &credentials).await?;
    tracing::info!(key_id = %saved.id, secret_id = secret.secret_id, overlap_seconds = overlap, "signing secret created");
    Ok(Json(KeyWithNewSecret {
        view: KeyView::of_row(&saved, now),
        secret,
    }))
}

pub(crate) async fn add_pin(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<Json<KeyView>> {
    let request: PinRequest = serde_json::from_slice(&body)
        .map_err(|e| AdminError::invalid(format!("invalid JSON body: {e}")))?;
    let overlap = overlap_seconds(&state, request.overlap_seconds)?;
    let row = live_key(&state, &id).await?;
    let now = state.clock.now();
    let mut pin = parse_pins(std::slice::from_ref(&request.thumbprint), now)?;
    let mut credentials = row.credentials.clone();
    prune(&mut credentials, now);
    credentials
        .certificate_pins
        .retain(|p| p.thumbprint != pin[0].thumbprint);
    if request.replace {
        let until = now.plus_seconds(overlap).0;
        for old in &mut credentials.certificate_pins {
            old.expires_at = Some(old.expires_at.map_or(until, |e| e.min(until)));
        }
        prune(&mut credentials, now);
    }
    credentials.certificate_pins.append(&mut pin);
    let saved = save(&state, &row, &credentials).await?;
    tracing::info!(key_id = %saved.id, "certificate pinned");
    Ok(Json(KeyView::of_row(&saved, now)))
}

pub(crate) async fn remove_pin(
    State(state): State<AdminState>,
    Path((id, thumbprint)): Path<(String, String)>,
) -> AdminResult<Json<KeyView>> {
    let row = live_key(&state, &id).await?;
    let now = state.clock.now();
    let target = parse_pins(std::slice::from_ref(&thumbprint), now)?;
    let mut credentials = row.credentials.clone();
    prune(&mut credentials, now);
    let before = credentials.certificate_pins.len();
    credentials
        .certificate_pins
        .retain(|p| p.thumbprint != target[0].thumbprint);
    if credentials.certificate_pins.len() == before {
        return Err(AdminError::not_found(
            "pin_not_found",
            "the key is not pinned to that certificate",
        ));
    }
    check_policy(&state, &credentials)?;
    let saved = save(&state, &row, &credentials).await?;
    Ok(Json(KeyView::of_row(&saved, now)))
}
