//! Service profiles: who may call, and how results and call failures are dressed.

pub mod signed;

pub use signed::SignedProfile;
