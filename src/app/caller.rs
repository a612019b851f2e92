//! Who is asking: the authenticated principal of a call, and the person an operator tool acts
//! for. Every use case that touches a tenant's data checks the tenant here, and records the
//! principal as the actor of what it changes.

use std::sync::Arc;

use super::AppError;
use crate::domain::{Principal, Role, StateChange, Tenant};

/// The caller of a use case. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Caller {
    principal: Arc<Principal>,
    /// The `x-caller-id` an operator tool named, kept beside the principal in history.
    on_behalf_of: Option<String>,
}

impl Caller {
    /// An authenticated principal, acting for `on_behalf_of` if an operator tool named someone.
    pub fn authenticated(principal: Arc<Principal>, on_behalf_of: Option<String>) -> Caller {
        Caller {
            principal,
            on_behalf_of,
        }
    }

    /// A caller of a server that authenticates nobody: every tenant and role, recorded under
    /// the name it gives itself.
    pub fn trusted(name: impl Into<String>) -> Caller {
        Caller {
            principal: Arc::new(Principal::trusted(name)),
            on_behalf_of: None,
        }
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The name recorded as the actor of what it changes.
    pub fn actor(&self) -> &str {
        self.principal.name()
    }

    /// The person an operator tool acted for, if named.
    pub fn on_behalf_of(&self) -> Option<&str> {
        self.on_behalf_of.as_deref()
    }

    /// `PERMISSION_DENIED` unless the caller has `role`.
    pub fn require(&self, role: Role) -> Result<(), AppError> {
        if self.principal.has_role(role) {
            Ok(())
        } else {
            Err(AppError::PermissionDenied(format!(
                "principal {} lacks the role {role} this call needs",
                self.principal.name()
            )))
        }
    }

    /// `PERMISSION_DENIED` unless the caller may act for `tenant`.
    pub fn check_tenant(&self, tenant: &Tenant) -> Result<(), AppError> {
        if self.principal.may_act_for(tenant) {
            Ok(())
        } else {
            metrics::counter!("suppressd_auth_failures_total", "reason" => "tenant_denied")
                .increment(1);
            Err(AppError::PermissionDenied(format!(
                "principal {} may not act for tenant {tenant}",
                self.principal.name()
            )))
        }
    }

    /// Marks changes made by this caller with the person it acted for.
    pub(crate) fn sign(&self, changes: &mut [StateChange]) {
        if let Some(person) = &self.on_behalf_of {
            for c in changes {
                c.on_behalf_of.clone_from(person);
            }
        }
    }
}
