//! Which digest verifier guards an inbound MESSAGE (`[sip.auth]`): the table of the
//! tenant the message is for, else the listener's own users, else none.

use std::collections::HashMap;

use crate::config::{SipAuthConfig, SipConfig};
use crate::digest::{Algorithm, Verifier};

/// The verifiers of `[sip.auth]`, one per realm.
pub struct Guards {
    /// For a tenant without a table of its own; None when `[sip.auth] users` is empty.
    listener: Option<Verifier>,
    /// By tenant id.
    tenants: HashMap<String, Verifier>,
}

fn algorithms(names: &[String]) -> Vec<Algorithm> {
    names.iter().filter_map(|a| Algorithm::parse(a)).collect()
}

impl Guards {
    /// The verifiers `config` asks for; None without `[sip.auth]`.
    pub fn new(config: &SipConfig) -> Option<Guards> {
        let auth: &SipAuthConfig = config.auth.as_ref()?;
        let listener = (!auth.users.is_empty()).then(|| {
            Verifier::new(
                &auth.realm_or(&config.domain),
                algorithms(&auth.algorithms),
                auth.users
                    .iter()
                    .map(|u| (u.username.clone(), u.password.clone())),
            )
        });
        let tenants = auth
            .tenants
            .iter()
            .map(|table| {
                let verifier = Verifier::new(
                    &table.realm_or(&config.domain),
                    algorithms(table.algorithms.as_deref().unwrap_or(&auth.algorithms)),
                    table
                        .users
                        .iter()
                        .map(|u| (u.username.clone(), u.password.clone())),
                );
                (table.tenant.clone(), verifier)
            })
            .collect();
        Some(Guards { listener, tenants })
    }

    /// Whether the verifier depends on the tenant (so the owner of the destination must
    /// be looked up first).
    pub fn per_tenant(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// The verifier for a message to `tenant` (None: a destination nobody takes).
    pub fn for_tenant(&self, tenant: Option<&str>) -> Option<&Verifier> {
        tenant
            .and_then(|t| self.tenants.get(t))
            .or(self.listener.as_ref())
    }
}
