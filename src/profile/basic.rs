//! HTTP Basic, shared by every profile and by the winstrom door's companies: parsing the
//! header and checking it against a list of users in constant time.
//!
//! Configured credentials are kept only as SHA-256 digests ([`Credential`]), and a login is
//! checked by comparing digests of equal, fixed size: neither the time taken nor an early exit
//! on a length mismatch tells anything about a user name or password.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;

/// A configured user name or password, kept as its SHA-256 digest (in 64-bit words: compared
/// word by word, without branching on any, it takes an eighth of the steps of byte by byte).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credential([u64; 4]);

impl Credential {
    pub(crate) fn new(text: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let mut words = [0u64; 4];
        for (w, bytes) in words.iter_mut().zip(digest.chunks_exact(8)) {
            *w = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
        }
        Credential(words)
    }

    /// Whether `given` is this credential, in time independent of both values.
    pub(crate) fn matches(&self, given: &Credential) -> subtle::Choice {
        self.0.ct_eq(&given.0)
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(***)")
    }
}

/// What an `Authorization: Basic ...` header gives: `user:password`, decoded, and where the
/// first colon is.
pub(crate) struct Given(String, usize);

impl Given {
    pub(crate) fn user(&self) -> &str {
        &self.0[..self.1]
    }

    fn password(&self) -> &str {
        &self.0[self.1 + 1..]
    }
}

/// The user and password of an `Authorization: Basic ...` header.
pub(crate) fn credentials(authorization: Option<&[u8]>) -> Result<Given, Error> {
    let header = authorization.ok_or(Error::Unauthorized)?;
    let header = std::str::from_utf8(header).map_err(|_| Error::Unauthorized)?;
    let (scheme, b64) = header.trim().split_once(' ').ok_or(Error::Unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Error::Unauthorized);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| Error::Unauthorized)?;
    let decoded = String::from_utf8(decoded).map_err(|_| Error::Unauthorized)?;
    let colon = decoded.find(':').ok_or(Error::Unauthorized)?;
    Ok(Given(decoded, colon))
}

/// Checks the header against `(user, password)` pairs; returns the user's index. Every pair
/// is compared, digest against digest, so timing does not tell which user exists nor how long
/// a password is.
pub(crate) fn check<'a>(
    authorization: Option<&[u8]>,
    users: impl Iterator<Item = (&'a Credential, &'a Credential)>,
) -> Result<usize, Error> {
    let given = credentials(authorization)?;
    let (user, pass) = (
        Credential::new(given.user()),
        Credential::new(given.password()),
    );
    let mut found = None;
    for (i, (u, p)) in users.enumerate() {
        let ok: bool = (u.matches(&user) & p.matches(&pass)).into();
        if ok && found.is_none() {
            found = Some(i);
        }
    }
    found.ok_or(Error::Unauthorized)
}

/// The `WWW-Authenticate` challenge for a realm.
pub(crate) fn challenge(realm: &str) -> String {
    format!(
        "Basic realm=\"{}\", charset=\"UTF-8\"",
        realm.replace('"', "")
    )
}

/// A profile that only checks HTTP Basic users: calls carry no signature parameters, and
/// every failure is a protocol fault.
#[derive(Debug)]
pub(crate) struct BasicProfile {
    pub name: String,
    pub realm: String,
    /// (name, its digest, the password's digest)
    users: Vec<(String, Credential, Credential)>,
}

impl BasicProfile {
    pub(crate) fn new(name: &str, realm: &str, users: Vec<(String, String)>) -> Self {
        BasicProfile {
            name: name.to_string(),
            realm: realm.to_string(),
            users: users
                .into_iter()
                .map(|(u, p)| {
                    let digest = Credential::new(&u);
                    (u, digest, Credential::new(&p))
                })
                .collect(),
        }
    }

    pub(crate) fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&str, Error> {
        let i = check(authorization, self.users.iter().map(|(_, u, p)| (u, p)))?;
        Ok(&self.users[i].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn users_are_checked_and_bad_headers_refused() {
        let p = BasicProfile::new(
            "b",
            "r",
            vec![("a".into(), "1".into()), ("b".into(), "2:x".into())],
        );
        assert_eq!(
            p.authenticate(Some(header("b:2:x").as_bytes())).unwrap(),
            "b"
        );
        assert!(p.authenticate(Some(header("a:2").as_bytes())).is_err());
        assert!(p.authenticate(Some(b"Bearer x")).is_err());
        assert!(p.authenticate(Some(b"Basic !!!")).is_err());
        assert!(p.authenticate(None).is_err());
        assert_eq!(challenge("a\"b"), "Basic realm=\"ab\", charset=\"UTF-8\"");
    }

    #[test]
    fn credentials_are_kept_and_compared_as_fixed_size_digests() {
        let c = Credential::new("s3cret");
        assert!(bool::from(c.matches(&Credential::new("s3cret"))));
        // A prefix, a longer value and the empty value are all just other digests.
        for other in ["s3cre", "s3cret!", "", "S3CRET"] {
            assert!(!bool::from(c.matches(&Credential::new(other))), "{other}");
        }
        assert_eq!(format!("{c:?}"), "Credential(***)");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
