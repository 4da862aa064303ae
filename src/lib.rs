#![forbid(unsafe_code)]
//! soapbridge: legacy SOAP clients in front, JSON backends behind. See ARCHITECTURE.md.

pub mod app;
pub mod backend;
pub mod call;
pub mod clock;
pub mod config;
pub mod error;
pub mod front;
pub mod logging;
pub mod mapping;
pub mod profile;
pub mod protocol;
pub mod route;
pub mod schema;
pub mod server;
pub mod stock;
pub mod store;
