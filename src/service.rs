//! A SOAP service while the bridge runs (served by the SOAP door at its path, and by the XML-RPC
//! door as `<service>.<operation>`): its WSDL, its profile, and its operations bound to their
//! backends.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;

use crate::call::Val;
use crate::config::{ServicePlan, StockCall};
use crate::error::{Error, Lang};
use crate::profile::signed::Stamp;
use crate::profile::{Profile, SignedProfile};
use crate::route::Route;
use crate::schema::ServiceDescription;

/// What one operation does.
#[derive(Debug)]
pub(crate) enum Operation {
    /// A backend call.
    Backend(Route),
    /// A stock-service operation, handled by the stock sync.
    Stock(StockCall),
}

#[derive(Debug)]
pub(crate) struct Service {
    pub name: String,
    /// Without a trailing '/'.
    pub path: String,
    pub desc: Arc<ServiceDescription>,
    /// The service's URL as clients see it.
    pub endpoint: String,
    pub wsdl: Bytes,
    pub profile: Option<Arc<Profile>>,
    /// One per operation, in the order of `desc.operations`.
    pub operations: Vec<Operation>,
    pub env_prefix: String,
    pub body_prefix: String,
    /// Refuse `xsi:nil` on optional, non-nillable elements instead of taking them as absent.
    pub strict_nil: bool,
    /// Shadow mode: the legacy service the calls are also sent to.
    pub shadow: Option<Arc<crate::migrate::shadow::Shadow>>,
}

impl Service {
    /// The service a plan describes, with its profile and its operations' backends.
    pub(crate) fn new(
        plan: ServicePlan,
        profile: Option<Arc<Profile>>,
        backend: impl Fn(&str) -> Arc<crate::backend::Backend>,
        telemetry: &Arc<crate::telemetry::Telemetry>,
    ) -> Service {
        let shadow = plan.shadow.and_then(|sp| {
            match crate::migrate::shadow::Shadow::new(&plan.name, sp, telemetry.clone()) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::error!(service = %plan.name, error = %e, "shadow mode is off: no HTTP client");
                    None
                }
            }
        });
        let operations = plan
            .operations
            .into_iter()
            .map(|a| match a {
                crate::config::Action::Backend(r) => {
                    let b = backend(&r.backend);
                    Operation::Backend(Route::new(r, b))
                }
                crate::config::Action::Stock(s) => Operation::Stock(s),
            })
            .collect();
        Service {
            name: plan.name,
            path: plan.path,
            desc: plan.desc,
            endpoint: plan.endpoint,
            wsdl: plan.wsdl,
            profile,
            operations,
            env_prefix: plan.env_prefix,
            body_prefix: plan.body_prefix,
            strict_nil: plan.strict_nil,
            shadow,
        }
    }

    /// `check` lines: the service and what each operation calls.
    pub(crate) fn describe(&self) -> Vec<String> {
        let profile = self.profile.as_ref().map_or("no profile".to_string(), |p| {
            format!("profile {}", p.describe())
        });
        let mut out = vec![format!(
            "{} {} ({}, {} operations, {profile})",
            self.name,
            self.path,
            self.desc.target_namespace,
            self.desc.operations.len()
        )];
        for (op, o) in self.desc.operations.iter().zip(&self.operations) {
            let call = match o {
                Operation::Backend(r) => r.describe(),
                Operation::Stock(s) => crate::stock::describe_op(&s.op),
            };
            out.push(format!("  {:<24} -> {call}", op.name));
        }
        if let Some(sh) = &self.shadow {
            let names: Vec<String> = self
                .desc
                .operations
                .iter()
                .map(|o| o.name.clone())
                .collect();
            out.push(format!("  {}", sh.describe(&names)));
        }
        out
    }

    /// How this service's envelopes are read.
    pub(crate) fn read_options(&self, max_depth: usize) -> crate::protocol::soap::ReadOptions {
        crate::protocol::soap::ReadOptions {
            strict_nil: self.strict_nil,
            ..crate::protocol::soap::ReadOptions::new(max_depth)
        }
    }

    /// HTTP Basic against the service's profile: the role user, or `None` for services
    /// without a profile.
    pub(crate) fn authenticate(&self, headers: &http::HeaderMap) -> Result<Option<String>, Error> {
        match &self.profile {
            Some(p) => p
                .authenticate(
                    headers
                        .get(http::header::AUTHORIZATION)
                        .map(HeaderValue::as_bytes),
                )
                .map(|u| Some(u.to_string())),
            None => Ok(None),
        }
    }

    /// The caller's language for messages (the profile's `lang` parameter or default).
    pub(crate) fn lang(&self, params: &Val<'_>) -> Lang {
        self.signed().map(|p| p.lang(params)).unwrap_or_default()
    }

    /// The service's signed profile, if it has one.
    pub(crate) fn signed(&self) -> Option<&SignedProfile> {
        self.profile.as_ref().and_then(|p| p.signed())
    }

    /// What the profile adds to an operation's result in the response content (`ackCode`,
    /// `responseTime`, `timeElapsed`), if anything: see [`Stamped`].
    pub(crate) fn stamp(&self, started: Instant) -> Option<Stamp<'_>> {
        self.signed().map(|p| p.success(started))
    }

    /// The error for a backend answer that the operation's output schema cannot carry.
    pub(crate) fn answer_misfit(
        &self,
        operation: usize,
        shape: &crate::protocol::xml::ShapeError,
    ) -> Error {
        let backend = match &self.operations[operation] {
            Operation::Backend(r) => r.backend.name.clone(),
            Operation::Stock(_) => "stock sync".into(),
        };
        Error::BackendBadResponse {
            backend,
            reason: format!("its answer does not fit the response schema: {shape}"),
        }
    }
}
