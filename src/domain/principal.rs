//! Who calls the service, and what they may do: principals, their tenants and their roles.

use std::collections::BTreeSet;
use std::fmt;

use super::Tenant;

/// What a caller may do. Each RPC needs one role; `Admin` has them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reports send results.
    Reporter,
    /// Reads statuses, histories, listings and statistics.
    Reader,
    /// Screens imports (`CheckImport`).
    Importer,
    /// Suppresses, reactivates and replaces addresses.
    Operator,
    /// Everything, including the admin service.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Reporter,
        Role::Reader,
        Role::Importer,
        Role::Operator,
        Role::Admin,
    ];

    /// The role's name, as the auth file and messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Reader => "reader",
            Role::Importer => "importer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tenants a principal may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant (`["*"]`).
    All,
    /// These tenants only.
    Only(BTreeSet<Tenant>),
}

/// An authenticated caller: a name recorded as the actor of what it does, its tenants and its
/// roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    name: String,
    tenants: TenantScope,
    roles: BTreeSet<Role>,
}

impl Principal {
    /// A principal with the given name, tenants and roles.
    pub fn new(name: impl Into<String>, tenants: TenantScope, roles: BTreeSet<Role>) -> Principal {
        Principal {
            name: name.into(),
            tenants,
            roles,
        }
    }

    /// Every tenant and every role: the caller of a server that authenticates nobody.
    pub fn trusted(name: impl Into<String>) -> Principal {
        Principal::new(name, TenantScope::All, BTreeSet::from([Role::Admin]))
    }

    /// The name recorded as the actor of its actions.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its roles.
    pub fn roles(&self) -> &BTreeSet<Role> {
        &self.roles
    }

    /// Its tenants.
    pub fn tenants(&self) -> &TenantScope {
        &self.tenants
    }

    /// Whether it has `role` (admins have every role).
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin) || self.roles.contains(&role)
    }

    /// Whether it may act for `tenant`.
    pub fn may_act_for(&self, tenant: &Tenant) -> bool {
        match &self.tenants {
            TenantScope::All => true,
            TenantScope::Only(tenants) => tenants.contains(tenant),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> Tenant {
        Tenant::parse(s).unwrap()
    }

    #[test]
    fn an_admin_has_every_role_and_others_only_their_own() {
        let admin = Principal::new("ops", TenantScope::All, BTreeSet::from([Role::Admin]));
        assert!(Role::ALL.iter().all(|&r| admin.has_role(r)));
        let crm = Principal::new(
            "crm",
            TenantScope::All,
            BTreeSet::from([Role::Importer, Role::Reader]),
        );
        assert!(crm.has_role(Role::Importer) && crm.has_role(Role::Reader));
        assert!(!crm.has_role(Role::Operator) && !crm.has_role(Role::Admin));
    }

    #[test]
    fn a_principal_acts_only_for_its_tenants_unless_it_has_them_all() {
        let p = Principal::new(
            "crm",
            TenantScope::Only(BTreeSet::from([tenant("acme")])),
            BTreeSet::from([Role::Reader]),
        );
        assert!(p.may_act_for(&tenant("acme")));
        assert!(!p.may_act_for(&tenant("globex")));
        assert!(
            !p.may_act_for(&tenant("")),
            "the default tenant is a tenant too"
        );
        assert!(Principal::trusted("x").may_act_for(&tenant("globex")));
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
