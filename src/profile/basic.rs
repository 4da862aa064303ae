//! HTTP Basic, shared by every profile and by the winstrom door's companies: parsing the
//! header and checking it against a list of users in constant time.

use base64::Engine;
use subtle::ConstantTimeEq;

use crate::error::Error;

pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The (user, password) of an `Authorization: Basic ...` header.
pub fn credentials(authorization: Option<&[u8]>) -> Result<(String, String), Error> {
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
    let (user, pass) = decoded.split_once(':').ok_or(Error::Unauthorized)?;
    Ok((user.to_string(), pass.to_string()))
}

/// Checks the header against `(user, password)` pairs; returns the user's index. Every pair
/// is compared, so timing does not tell which user exists.
pub fn check<'a>(
    authorization: Option<&[u8]>,
    users: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<usize, Error> {
    let (user, pass) = credentials(authorization)?;
    let mut found = None;
    for (i, (u, p)) in users.enumerate() {
        let ok = ct_eq(u, &user) & ct_eq(p, &pass);
        if ok && found.is_none() {
            found = Some(i);
        }
    }
    found.ok_or(Error::Unauthorized)
}

/// The `WWW-Authenticate` challenge for a realm.
pub fn challenge(realm: &str) -> String {
    format!(
        "Basic realm=\"{}\", charset=\"UTF-8\"",
        realm.replace('"', "")
    )
}

/// A profile that only checks HTTP Basic users: calls carry no signature parameters, and
/// every failure is a protocol fault.
#[derive(Debug)]
pub struct BasicProfile {
    pub name: String,
    pub realm: String,
    users: Vec<(String, String)>,
}

impl BasicProfile {
    pub fn new(name: &str, realm: &str, users: Vec<(String, String)>) -> Self {
        BasicProfile {
            name: name.to_string(),
            realm: realm.to_string(),
            users,
        }
    }

    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&str, Error> {
        let i = check(
            authorization,
            self.users.iter().map(|(u, p)| (u.as_str(), p.as_str())),
        )?;
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
}
