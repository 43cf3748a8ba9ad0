//! Reproduces every test vector published in `docs/signing.md` with
//! `tollgate_core::signing`.
//!
//! The vectors are read from the document itself (each one is a fenced
//! block tagged `vector` holding `field: value` lines), so the published
//! values and this test cannot drift apart. The expected values in the
//! document were computed by an independent Python implementation, the one
//! shown in the document.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tollgate_core::signing::{
    Scheme, SignedParts, canonical_query, decode_secret, decode_signature, message, sign, verify,
};

/// One vector: its fields by name, in the document's spelling.
struct Vector {
    fields: HashMap<String, String>,
}

impl Vector {
    fn get(&self, field: &str) -> &str {
        let name = self.fields.get("name").map_or("?", String::as_str);
        self.fields
            .get(field)
            .unwrap_or_else(|| panic!("vector {name} has no `{field}` line"))
    }
}

fn signing_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/signing.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every fenced block whose info string is `vector`.
fn vectors(doc: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut current: Option<HashMap<String, String>> = None;
    for line in doc.lines() {
        match current.as_mut() {
            None if line.trim_end() == "```vector" => current = Some(HashMap::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => {
                let fields = current.take().expect("inside a block");
                out.push(Vector { fields });
            }
            Some(fields) => {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("vector line without a colon: {line:?}"));
                let value = value.strip_prefix(' ').unwrap_or(value);
                let previous = fields.insert(name.to_owned(), value.to_owned());
                assert!(previous.is_none(), "field {name} given twice");
            }
        }
    }
    assert!(current.is_none(), "unterminated vector block");
    out
}

/// The document shows `\n` for a line feed and `\\` for a backslash.
fn unescape(shown: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(shown.len());
    let mut bytes = shown.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            other => panic!("unknown escape \\{other:?} in {shown:?}"),
        }
    }
    out
}

#[test]
fn unescape_handles_both_escapes() {
    assert_eq!(unescape(r"a\nb\\nc"), b"a\nb\\nc".to_vec());
}

#[test]
fn every_published_vector_reproduces() {
    let doc = signing_doc();
    let vectors = vectors(&doc);
    assert!(
        vectors.len() >= 4,
        "docs/signing.md publishes {} vectors, expected at least 4",
        vectors.len()
    );
    let mut schemes_seen = Vec::new();
    for v in &vectors {
        let name = v.get("name");
        let scheme = match v.get("scheme") {
            "tollgate" => Scheme::Tollgate,
            "coinbase" => Scheme::Coinbase,
            other => panic!("vector {name}: unknown scheme {other:?}"),
        };
        schemes_seen.push(scheme);
        let secret = decode_secret(v.get("secret"))
            .unwrap_or_else(|| panic!("vector {name}: secret is not base64"));
        let parts = SignedParts {
            timestamp: v.get("timestamp"),
            method: v.get("method"),
            path: v.get("path"),
            query: v.get("query"),
            body: v.get("body").as_bytes(),
        };
        if scheme == Scheme::Tollgate {
            assert_eq!(
                canonical_query(parts.query),
                v.get("canonical_query"),
                "vector {name}: canonical query"
            );
            assert_eq!(
                hex::encode(Sha256::digest(parts.body)),
                v.get("body_sha256"),
                "vector {name}: body hash"
            );
        }
        let signed = message(scheme, &parts, v.get("key_id"));
        assert_eq!(
            String::from_utf8_lossy(&signed),
            String::from_utf8_lossy(&unescape(v.get("message"))),
            "vector {name}: message"
        );
        let signature = sign(&secret, &signed);
        assert_eq!(signature, v.get("signature"), "vector {name}: signature");

        let decoded = decode_signature(v.get("signature"))
            .unwrap_or_else(|| panic!("vector {name}: signature is not base64 of 32 bytes"));
        assert!(verify(&secret, &signed, &decoded), "vector {name}: verify");
        let mut tampered = signed.clone();
        tampered.push(b' ');
        assert!(
            !verify(&secret, &tampered, &decoded),
            "vector {name}: a changed message must not verify"
        );
    }
    assert!(
        schemes_seen.contains(&Scheme::Tollgate),
        "no tollgate-scheme vector"
    );
    assert!(
        schemes_seen.contains(&Scheme::Coinbase),
        "no coinbase-scheme vector"
    );
}
