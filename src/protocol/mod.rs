//! Wire formats. Only modules under `protocol` know how a message looks on the wire; each
//! says in its own error type why a message could not be read (`xml::ReadError` for what every
//! XML format shares, `soap::SoapError`, `xmlrpc::XmlRpcError`, `winstrom::DocumentError`).

pub mod compare;
pub mod soap;
pub mod winstrom;
pub mod wql;
pub mod xml;
pub mod xmlrpc;

/// One field-level complaint (a backend's validation error), as faults and Flexi answers
/// carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
