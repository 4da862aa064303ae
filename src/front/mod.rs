//! Front doors: each takes an HTTP request in its protocol, decodes it (with `protocol::*`)
//! into the neutral call, runs the shared pipeline (`App::execute`) and answers in the same
//! protocol. Each door chooses, in one place, how an `Error` goes to its wire.

pub(crate) mod soap;
pub(crate) mod stream;
pub(crate) mod winstrom;
pub(crate) mod xmlrpc;
