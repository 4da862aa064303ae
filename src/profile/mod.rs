//! Service profiles: who may call, and how results and call failures are dressed.
//!
//! - `signed`: GittiGidiyor-style HTTP Basic role user plus `apiKey`/`sign`/`time`/`lang`
//!   parameters, results stamped with `ackCode`, failures of the call as `ackCode=failure`.
//! - `basic`: HTTP Basic users only; results as the backend mapping shapes them, failures as
//!   protocol faults.

pub(crate) mod basic;
mod limit;
pub(crate) mod signed;

pub(crate) use basic::BasicProfile;

/// The user name of an HTTP Basic `Authorization` value (for a recording: never the password).
pub(crate) fn basic_user(authorization: &[u8]) -> Option<String> {
    basic::credentials(Some(authorization))
        .ok()
        .map(|g| g.user().to_string())
}

/// An HTTP Basic `Authorization` value for `user` and `password` (to check credentials given
/// some other way, such as a Flexi login, against a profile).
pub(crate) fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
pub(crate) use limit::RateLimit;
pub(crate) use signed::SignedProfile;

use crate::error::Error;

#[derive(Debug)]
enum Kind {
    Signed(SignedProfile),
    Basic(BasicProfile),
}

#[derive(Debug)]
pub(crate) struct Profile {
    kind: Kind,
    /// Calls per user (a signed profile's role user: one per apiKey) and window.
    limiter: Option<limit::RateLimiter>,
}

impl Profile {
    /// The profile a plan describes; a signed profile keeps used signatures in `store` (the
    /// compiled plan always has one when it has a signed profile).
    pub(crate) fn new(
        plan: &crate::config::ProfilePlan,
        store: Option<&std::sync::Arc<crate::store::Store>>,
    ) -> Profile {
        let (kind, rate_limit) = match plan {
            crate::config::ProfilePlan::Signed(p) => (
                Kind::Signed(SignedProfile::new(
                    p,
                    store
                        .expect("a plan with a signed profile has a store")
                        .clone(),
                )),
                p.rate_limit,
            ),
            crate::config::ProfilePlan::Basic(p) => (
                Kind::Basic(BasicProfile::new(&p.name, &p.realm, p.users.clone())),
                p.rate_limit,
            ),
        };
        Profile {
            kind,
            limiter: rate_limit.map(limit::RateLimiter::new),
        }
    }

    /// The profile's name, and its rate limit when it has one.
    pub(crate) fn describe(&self) -> String {
        match &self.limiter {
            Some(l) => format!("{} (at most {})", self.name(), l.describe()),
            None => self.name().to_string(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match &self.kind {
            Kind::Signed(p) => &p.name,
            Kind::Basic(p) => &p.name,
        }
    }

    /// Checks HTTP Basic credentials; returns the authenticated user.
    /// The user goes into the call's log lines (and its span, when one is exported).
    pub(crate) fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&str, Error> {
        let user = match &self.kind {
            Kind::Signed(p) => p.authenticate(authorization),
            Kind::Basic(p) => p.authenticate(authorization),
        }?;
        crate::telemetry::set_user(user);
        Ok(user)
    }

    /// Counts a call of an authenticated `user` against the profile's rate limit.
    pub(crate) fn admit(&self, user: &str, now_ms: i64) -> Result<(), Error> {
        match &self.limiter {
            Some(l) => l.admit(user, now_ms),
            None => Ok(()),
        }
    }

    pub(crate) fn www_authenticate(&self) -> String {
        match &self.kind {
            Kind::Signed(p) => p.www_authenticate(),
            Kind::Basic(p) => basic::challenge(&p.realm),
        }
    }

    /// The signed profile, when this is one.
    pub(crate) fn signed(&self) -> Option<&SignedProfile> {
        match &self.kind {
            Kind::Signed(p) => Some(p),
            Kind::Basic(_) => None,
        }
    }
}
