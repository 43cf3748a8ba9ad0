//! Step 3, the organization: it exists, is active, and its plan opens the
//! route's product. Returns the organization and its plan for later steps.

use super::Refusal;
use crate::directory::{Directory, KeyEntry, OrgEntry};
use crate::plans::{Plan, Plans};
use std::sync::Arc;
use tollgate_core::Rejection;
use tollgate_core::access;

/// Checks the key's organization.
pub fn check(
    directory: &Directory,
    plans: &Plans,
    key: &KeyEntry,
    product: &str,
) -> Result<(Arc<OrgEntry>, Option<Arc<Plan>>), Refusal> {
    let Some(org) = directory.org(&key.org_id) else {
        // Keys reference orgs by foreign key, so this is an internal error;
        // refuse rather than let an ownerless key through.
        tracing::error!(key_id = %key.id, "key without an organization in the directory");
        return Err(Refusal::new(
            Rejection::InvalidApiKey,
            "the API key is not a valid key",
        ));
    };
    let plan = match org.plan.as_deref() {
        None => None,
        Some(name) => match plans.get(name) {
            Some(plan) => Some(Arc::clone(plan)),
            None => {
                return Err(Refusal::new(
                    Rejection::ProductNotInPlan,
                    format!("the organization's plan {name:?} is not configured"),
                ));
            }
        },
    };
    let scope = plan.as_ref().and_then(|p| p.products.as_ref());
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
    })?;
    Ok((org, plan))
}
