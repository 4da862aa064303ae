//! Service profiles: who may call, and how results and call failures are dressed.
//!
//! - `signed`: GittiGidiyor-style HTTP Basic role user plus `apiKey`/`sign`/`time`/`lang`
//!   parameters, results stamped with `ackCode`, failures of the call as `ackCode=failure`.
//! - `basic`: HTTP Basic users only; results as the backend mapping shapes them, failures as
//!   protocol faults.

pub(crate) mod basic;
pub(crate) mod signed;

pub(crate) use basic::BasicProfile;
pub(crate) use signed::SignedProfile;

use crate::error::Error;

#[derive(Debug)]
pub(crate) enum Profile {
    Signed(SignedProfile),
    Basic(BasicProfile),
}

impl Profile {
    /// The profile a plan describes; a signed profile keeps used signatures in `store` (the
    /// compiled plan always has one when it has a signed profile).
    pub(crate) fn new(
        plan: &crate::config::ProfilePlan,
        store: Option<&std::sync::Arc<crate::store::Store>>,
    ) -> Profile {
        match plan {
            crate::config::ProfilePlan::Signed(p) => Profile::Signed(SignedProfile::new(
                p,
                store
                    .expect("a plan with a signed profile has a store")
                    .clone(),
            )),
            crate::config::ProfilePlan::Basic(p) => {
                Profile::Basic(BasicProfile::new(&p.name, &p.realm, p.users.clone()))
            }
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Profile::Signed(p) => &p.name,
            Profile::Basic(p) => &p.name,
        }
    }

    /// Checks HTTP Basic credentials; returns the authenticated user.
    pub(crate) fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&str, Error> {
        match self {
            Profile::Signed(p) => p.authenticate(authorization),
            Profile::Basic(p) => p.authenticate(authorization),
        }
    }

    pub(crate) fn www_authenticate(&self) -> String {
        match self {
            Profile::Signed(p) => p.www_authenticate(),
            Profile::Basic(p) => basic::challenge(&p.realm),
        }
    }

    /// The signed profile, when this is one.
    pub(crate) fn signed(&self) -> Option<&SignedProfile> {
        match self {
            Profile::Signed(p) => Some(p),
            Profile::Basic(_) => None,
        }
    }
}
