//! The winstrom front door (ABRA Flexi clients): `/c/{company}/{evidence}[/{id}|/({filter})].{xml|json}`.
//!
//! A company names the backend (and its tenant) holding its data and the HTTP Basic users who
//! may use it. An evidence is configuration: its properties (Flexi name, type, backend name,
//! which filter operators the backend can apply to it), its routes (`list`, `get`, `create`,
//! `update`: operation mappings like any other) and its actions (`delete`,
//! `prepocti-nakupni-cenu`, ...). A WQL filter becomes a structured JSON filter for the
//! backend, never a string to splice. Every answer and every error is in Flexi's shape, in the
//! format the URL's extension asks for.
//!
//! - this module: the door's state, its companies and evidences bound to their backends;
//! - `http`: URLs, reading lists and records, filters, and the one place answers and their
//!   statuses are written;
//! - `import`: documents: creates, updates, actions and filtered actions, all or nothing.

mod http;
mod import;
mod session;

pub(crate) use session::{IDLE_MS as SESSION_IDLE_MS, MAX_SESSIONS, Sessions};

/// Where Flexi's login, logout and keep-alive are (beside, not under, the door's prefix).
pub(crate) const LOGIN_PREFIX: &str = "/login-logout/";
/// Where Flexi's `/status/user/{user}/logout.json` is (python-abraflexi's logout).
pub(crate) const USER_STATUS_PREFIX: &str = "/status/user/";

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::{EvidencePlan, WinstromPlan};
use crate::profile::Profile;
use crate::route::Route;

pub(crate) use http::handle;

/// One evidence of one company: its plan, its routes bound to the company's backend.
#[derive(Debug)]
struct Evidence {
    plan: Arc<EvidencePlan>,
    list: Route,
    get: Option<Route>,
    create: Option<Route>,
    update: Option<Route>,
    /// In name order (the order Flexi lists them in its message).
    actions: BTreeMap<String, Route>,
}

#[derive(Debug)]
struct Company {
    tenant: String,
    profile: Arc<Profile>,
    evidences: HashMap<String, Evidence>,
}

/// The winstrom door while the bridge runs.
#[derive(Debug)]
pub(crate) struct WinstromDoor {
    pub prefix: String,
    max_records: usize,
    max_matches: usize,
    filter_limits: crate::protocol::wql::Limits,
    offset: chrono::FixedOffset,
    /// What `now()` in a filter is.
    clock: crate::clock::Clock,
    companies: HashMap<String, Company>,
    /// Login sessions (they outlive a reload: the bridge keeps one table).
    sessions: Arc<Sessions>,
}

impl WinstromDoor {
    /// The door a plan describes, its companies' routes bound to their backends.
    pub(crate) fn new(
        plan: &WinstromPlan,
        profile: impl Fn(&str) -> Arc<Profile>,
        backend: impl Fn(&str) -> Arc<Backend>,
        clock: crate::clock::Clock,
        sessions: Arc<Sessions>,
    ) -> WinstromDoor {
        let companies = plan
            .companies
            .iter()
            .map(|(name, c)| {
                let b = backend(&c.backend);
                let bind = |r: &Arc<crate::config::RoutePlan>| Route::new(r.clone(), b.clone());
                let evidences = plan
                    .evidences
                    .iter()
                    .map(|(ev, e)| {
                        let bound = Evidence {
                            plan: e.clone(),
                            list: bind(&e.list),
                            get: e.get.as_ref().map(bind),
                            create: e.create.as_ref().map(bind),
                            update: e.update.as_ref().map(bind),
                            actions: e
                                .actions
                                .iter()
                                .map(|(a, r)| (a.clone(), bind(r)))
                                .collect(),
                        };
                        (ev.clone(), bound)
                    })
                    .collect();
                let company = Company {
                    tenant: c.tenant.clone(),
                    profile: profile(&c.profile),
                    evidences,
                };
                (name.clone(), company)
            })
            .collect();
        WinstromDoor {
            prefix: plan.prefix.clone(),
            max_records: plan.max_records,
            max_matches: plan.max_matches,
            filter_limits: plan.filter_limits,
            offset: plan.offset,
            clock,
            companies,
            sessions,
        }
    }

    /// Whether a request path is the door's.
    pub(crate) fn owns(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
            || path.starts_with(LOGIN_PREFIX)
            || path.starts_with(USER_STATUS_PREFIX)
    }

    /// `check` lines: each evidence and what its routes call.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.companies.keys().collect();
        names.sort();
        for name in names {
            let c = &self.companies[name];
            out.push(format!(
                "winstrom {}/{name} (tenant {}, profile {})",
                self.prefix,
                c.tenant,
                c.profile.name()
            ));
            let mut evs: Vec<&Evidence> = c.evidences.values().collect();
            evs.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
            for e in evs {
                out.push(format!(
                    "  {:<24} list -> {}",
                    e.plan.name,
                    e.list.describe()
                ));
                for (k, r) in [
                    ("get", &e.get),
                    ("create", &e.create),
                    ("update", &e.update),
                ] {
                    if let Some(r) = r {
                        out.push(format!("  {:<24} {k} -> {}", "", r.describe()));
                    }
                }
                for (a, r) in &e.actions {
                    out.push(format!("  {:<24} action {a} -> {}", "", r.describe()));
                }
            }
        }
        out
    }
}
