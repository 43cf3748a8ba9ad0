//! Step 3, the organization: it exists, is active, and its plan opens the
//! route's product.

use super::Refusal;
use crate::directory::{Directory, KeyEntry};
use std::collections::HashMap;
use tollgate_core::Rejection;
use tollgate_core::access::{self, ProductScope};

/// Plans' product scopes: `None` opens every product.
pub type PlanScopes = HashMap<String, Option<ProductScope>>;

/// Checks the key's organization.
pub fn check(
    directory: &Directory,
    plans: &PlanScopes,
    key: &KeyEntry,
    product: &str,
) -> Result<(), Refusal> {
    let Some(org) = directory.org(&key.org_id) else {
        // Keys reference orgs by foreign key, so this is an internal error;
        // refuse rather than let an ownerless key through.
        tracing::error!(key_id = %key.id, "key without an organization in the directory");
        return Err(Refusal::new(
            Rejection::InvalidApiKey,
            "the API key is not a valid key",
        ));
    };
    let scope = match org.plan.as_deref() {
        None => None,
        Some(plan) => match plans.get(plan) {
            Some(scope) => scope.as_ref(),
            None => {
                return Err(Refusal::new(
                    Rejection::ProductNotInPlan,
                    format!("the organization's plan {plan:?} is not configured"),
                ));
            }
        },
    };
    access::check_org(org.status, scope, product).map_err(|rejection| {
        let detail = match rejection {
            Rejection::OrgSuspended => {
                "the organization that owns this key is suspended".to_owned()
            }
            Rejection::ProductNotInPlan => {
                format!("the organization's plan does not include product {product:?}")
            }
            other => other.title().to_owned(),
        };
        Refusal::new(rejection, detail)
    })
}
