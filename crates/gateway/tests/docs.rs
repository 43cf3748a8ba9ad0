//! The documentation and the shipped configuration examples stay true.

use tollgate_core::Rejection;
use tollgate_gateway::Config;

const ERRORS_MD: &str = include_str!("../../../docs/errors.md");

#[test]
fn every_ingress_code_is_documented_with_its_status() {
    for rejection in Rejection::ALL {
        let row = format!("| `{}` | {} |", rejection.code(), rejection.status());
        assert!(
            ERRORS_MD.contains(&row),
            "docs/errors.md lacks the row {row}"
        );
    }
}

#[test]
fn every_admin_code_is_documented() {
    for (code, status) in [
        ("admin_unauthorized", 401),
        ("invalid_request", 400),
        ("unknown_plan", 400),
        ("unknown_product", 400),
        ("org_not_found", 404),
        ("key_not_found", 404),
        ("charge_not_found", 404),
        ("not_found", 404),
        ("method_not_allowed", 405),
        ("key_revoked", 409),
        ("store_unavailable", 503),
    ] {
        let row = format!("| `{code}` | {status} |");
        assert!(
            ERRORS_MD.contains(&row),
            "docs/errors.md lacks the row {row}"
        );
    }
}

#[test]
fn the_example_configuration_is_valid() {
    let config = Config::from_toml_str_without_env(include_str!("../../../tollgate.example.toml"))
        .expect("tollgate.example.toml is valid");
    assert_eq!(config.ingress.listen.port(), 8080);
    assert!(config.route_table().expect("routes").routes().len() >= 5);
    assert!(config.plans.contains_key("pro"));
}

#[test]
fn the_demo_configuration_is_valid() {
    Config::from_toml_str_without_env(tollgate_gateway::demo::DEMO_CONFIG)
        .expect("demo.toml is valid");
}
