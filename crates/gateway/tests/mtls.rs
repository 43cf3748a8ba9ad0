//! Step 4 over real TLS (rustls on both sides): keys pinned to client
//! certificates, certificate-bound JWTs (RFC 8705 `cnf.x5t#S256`), pin
//! rotation with overlap. The test makes its own CA and certificates.

mod common;

use common::{TestGateway, expect_problem};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;
use tollgate_gateway::Clock;
use tollgate_gateway::config::{ClientCertificates, IssuerConfig, TlsConfig};

const ISSUER: &str = "https://auth.test";
const SECRET: &str = "a-shared-secret-of-at-least-32-characters!";

struct Pki {
    ca_pem: String,
    /// (cert PEM, key PEM, SHA-256 of the cert DER) per client.
    clients: Vec<(String, String, [u8; 32])>,
    /// A client certificate from a CA the gateway does not trust.
    stranger: (String, String),
}

fn client_cert(name: &str, issuer: &Issuer<'_, KeyPair>) -> (String, String, [u8; 32]) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![format!("{name}.bots.test")]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).unwrap();
    let thumbprint: [u8; 32] = Sha256::digest(cert.der()).into();
    (cert.pem(), key.serialize_pem(), thumbprint)
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, key)
}

/// Writes the server's certificate and the client CA into `dir`.
fn pki(dir: &Path) -> Pki {
    let (ca_params, ca_key) = ca("tollgate test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let (other_params, other_key) = ca("somebody else's CA");
    let other = Issuer::new(other_params, other_key);
    let (stranger_cert, stranger_key, _) = client_cert("stranger", &other);
    Pki {
        ca_pem: ca_cert.pem(),
        clients: vec![client_cert("alpha", &issuer), client_cert("beta", &issuer)],
        stranger: (stranger_cert, stranger_key),
    }
}

async fn gateway() -> (TestGateway, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let dir_path = dir.path().to_owned();
    let gw = TestGateway::start_with(move |config| {
        config.ingress.tls = Some(TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file: dir_path.join("server.pem"),
            key_file: dir_path.join("server.key"),
            client_ca_file: dir_path.join("ca.pem"),
            client_certificates: ClientCertificates::Optional,
        });
        config.jwt.issuers = vec![IssuerConfig {
            issuer: ISSUER.into(),
            audiences: vec!["tollgate".into()],
            algorithms: vec!["HS256".into()],
            hs256_secret: Some(SECRET.into()),
            jwks_file: None,
            jwks_url: None,
            refresh_seconds: 300,
            cooldown_seconds: 10,
            leeway_seconds: 30,
            org_claim: "org".into(),
            rate_classes: vec![],
        }];
    })
    .await;
    // The certificate files are read at start; the directory may go.
    drop(dir);
    (gw, pki)
}

/// An HTTPS client trusting the test CA, presenting `identity` if given.
fn client(pki: &Pki, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn tls_url(gw: &TestGateway, path: &str) -> String {
    format!("https://{}{path}", gw.tls.unwrap())
}

#[tokio::test]
async fn a_pinned_key_needs_its_certificate() {
    let (gw, pki) = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let alpha = &pki.clients[0];
    let beta = &pki.clients[1];
    let (status, body) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({
                "name": "pinned",
                "credentials": { "certificate": "all" },
                "certificate_pins": [hex::encode(alpha.2)],
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let key_id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        body["credentials"]["certificate_pins"][0]["thumbprint"],
        hex::encode(alpha.2)
    );

    let with_alpha = client(&pki, Some((&alpha.0, &alpha.1)));
    let with_beta = client(&pki, Some((&beta.0, &beta.1)));
    let anonymous = client(&pki, None);
    let get = |c: &reqwest::Client| {
        c.get(tls_url(&gw, "/v1/ticker"))
            .header("X-API-Key", &key)
            .send()
    };
    let ok = get(&with_alpha).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        gw.upstream.last().unwrap().headers["x-forwarded-proto"],
        "https"
    );
    expect_problem(get(&with_beta).await.unwrap(), 401, "certificate_mismatch").await;
    expect_problem(get(&anonymous).await.unwrap(), 401, "certificate_mismatch").await;
    // The plain listener has no client certificate at all.
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        401,
        "certificate_mismatch",
    )
    .await;
    // A certificate from an untrusted CA fails the handshake itself.
    let stranger = client(&pki, Some((&pki.stranger.0, &pki.stranger.1)));
    assert!(get(&stranger).await.is_err());
    assert_eq!(gw.upstream.count(), 1);

    // Rotation: pin beta, replacing alpha after a 60 s overlap.
    let (status, body) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/keys/{key_id}/certificate-pins"),
            Some(json!({ "thumbprint": hex::encode(beta.2), "replace": true, "overlap_seconds": 60 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&with_alpha).await.unwrap().status(), 200);
    assert_eq!(get(&with_beta).await.unwrap().status(), 200);
    gw.clock.advance_millis(61_000);
    expect_problem(get(&with_alpha).await.unwrap(), 401, "certificate_mismatch").await;
    assert_eq!(get(&with_beta).await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_certificate_bound_token_is_accepted_only_with_its_certificate() {
    let (gw, pki) = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let (status, body) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({ "name": "jwt", "credentials": { "jwt": "all" } })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let alpha = &pki.clients[0];
    let beta = &pki.clients[1];
    let x5t = tollgate_core::credential::x5t_s256(&alpha.2);
    let claims = json!({
        "iss": ISSUER, "aud": "tollgate", "org": org,
        "exp": gw.clock.now().0 / 1000 + 300,
        "cnf": { "x5t#S256": x5t },
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let call = |c: &reqwest::Client, url: String| {
        c.get(url)
            .header("X-API-Key", &key)
            .bearer_auth(&token)
            .send()
    };
    let with_alpha = client(&pki, Some((&alpha.0, &alpha.1)));
    let with_beta = client(&pki, Some((&beta.0, &beta.1)));
    assert_eq!(
        call(&with_alpha, tls_url(&gw, "/v1/ticker"))
            .await
            .unwrap()
            .status(),
        200
    );
    expect_problem(
        call(&with_beta, tls_url(&gw, "/v1/ticker")).await.unwrap(),
        401,
        "certificate_mismatch",
    )
    .await;
    expect_problem(
        call(&client(&pki, None), tls_url(&gw, "/v1/ticker"))
            .await
            .unwrap(),
        401,
        "certificate_mismatch",
    )
    .await;
    // Without TLS, the bound token alone is not enough (it may be stolen).
    expect_problem(
        call(&gw.http, gw.url("/v1/ticker")).await.unwrap(),
        401,
        "certificate_mismatch",
    )
    .await;
    assert_eq!(gw.upstream.count(), 1);
    gw.stop().await;
}
