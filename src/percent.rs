//! Percent-encoding for URLs the bridge writes (backend paths and queries, winstrom
//! references, schema links) and reads (winstrom paths), on the `percent-encoding` crate:
//! everything but RFC 3986's unreserved characters is encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What is encoded: all but `A-Z a-z 0-9 - . _ ~`.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends `s`, percent-encoded, to `out`.
pub(crate) fn encode_into(out: &mut String, s: &str) {
    out.extend(utf8_percent_encode(s, RESERVED));
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8
/// (a path with either does not name anything).
pub(crate) fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let malformed = b.iter().enumerate().any(|(i, c)| {
        *c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay_and_decoding_is_strict() {
        let mut out = String::new();
        encode_into(&mut out, "FT/1 2 š-._~");
        assert_eq!(out, "FT%2F1%202%20%C5%A1-._~");
        assert_eq!(decode("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(decode("%C5%A1").as_deref(), Some("š"));
        assert_eq!(decode("%G1"), None);
        assert_eq!(decode("%2"), None);
        assert_eq!(decode("%FF"), None);
    }
}
