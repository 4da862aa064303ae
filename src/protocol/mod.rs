//! Wire formats. Only modules under `protocol` know how a message looks on the wire.

pub mod soap;
pub mod winstrom;
pub mod wql;
pub mod xml;
pub mod xmlrpc;
