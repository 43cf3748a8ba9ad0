//! Step 4's costs: verifying an HMAC request signature over a 1 KiB body
//! (body hash, canonical string, HMAC, constant-time compare), a JWT found
//! in the verified-token cache, and, for comparison, a fresh RS256
//! verification. Run: `cargo bench -p tollgate-gateway --bench credentials`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};
use tollgate_core::signing::{self, SignedParts};
use tollgate_core::time::UnixMillis;
use tollgate_gateway::config::{IssuerConfig, JwtConfig};
use tollgate_gateway::jwt::JwtVerifier;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
const NOW: i64 = 1_800_000_000;

fn hmac(c: &mut Criterion) {
    let secret = [7u8; 32];
    let body = vec![b'x'; 1024];
    let parts = SignedParts {
        timestamp: "1800000000.123",
        method: "POST",
        path: "/v1/orders",
        query: "venue=binance&symbol=BTCUSDT",
        body: &body,
    };
    let signature = signing::decode_signature(&signing::sign(
        &secret,
        signing::canonical_string(&parts, "abcdefghijklmnop").as_bytes(),
    ))
    .unwrap();
    c.bench_function("hmac_verify_1kib_body", |b| {
        b.iter(|| {
            let message = signing::canonical_string(black_box(&parts), "abcdefghijklmnop");
            assert!(signing::verify(
                &secret,
                message.as_bytes(),
                black_box(&signature)
            ));
        })
    });
}

fn jwt(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = JwtConfig {
        issuers: vec![IssuerConfig {
            issuer: "https://bench.issuer".into(),
            audiences: vec!["tollgate".into()],
            algorithms: vec!["RS256".into()],
            hs256_secret: None,
            jwks_file: Some(format!("{FIXTURES}/jwks-a.json").into()),
            jwks_url: None,
            refresh_seconds: 3600,
            cooldown_seconds: 10,
            leeway_seconds: 30,
            org_claim: "org".into(),
            rate_classes: vec![],
        }],
    };
    let verifier = runtime.block_on(JwtVerifier::start(&config, 1000)).unwrap();
    let claims = json!({
        "iss": "https://bench.issuer", "aud": "tollgate", "org": "org_bench",
        "sub": "bot-7", "tier": "premium", "exp": NOW + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-a".into());
    let pem = std::fs::read(format!("{FIXTURES}/rsa-a.pem")).unwrap();
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap();
    let now = UnixMillis(NOW * 1000);
    runtime.block_on(verifier.verify(&token, now)).unwrap();
    c.bench_function("jwt_cached_check", |b| {
        b.iter(|| {
            let hit = verifier.cached(black_box(&token), now).unwrap();
            assert!(hit.is_ok());
        })
    });
    let public = std::fs::read(format!("{FIXTURES}/rsa-a.pub.pem")).unwrap();
    let key = DecodingKey::from_rsa_pem(&public).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["tollgate"]);
    validation.set_issuer(&["https://bench.issuer"]);
    validation.validate_exp = false;
    c.bench_function("jwt_fresh_rs256_verify", |b| {
        b.iter(|| {
            let data =
                jsonwebtoken::decode::<Map<String, Value>>(black_box(&token), &key, &validation)
                    .unwrap();
            black_box(data.claims.len())
        })
    });
}

criterion_group!(benches, hmac, jwt);
criterion_main!(benches);
