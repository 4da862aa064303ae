//! What never leaves the bridge in a log line or an error report: members whose names say they
//! hold a secret (passwords, tokens, keys, sessions, signatures, card data), and any number that
//! looks like a payment card's (13 to 19 digits passing the Luhn check), whatever its name.

use serde_json::Value;

/// Keys whose values are secret (compared without case, `-` or `_`).
pub(crate) fn is_secret(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    // Words that name a secret wherever they appear in a key ...
    const WITHIN: [&str; 17] = [
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "apikey",
        "privatekey",
        "credential",
        "cookie",
        "session",
        "signature",
        "cardnumber",
        "creditcard",
        "ccnumber",
        "cardno",
        "cvv",
        "cvc",
    ];
    // ... and short ones only as the whole key (`pan`, not `company`; `sign`, not `design`).
    const WHOLE: [&str; 6] = ["pwd", "sign", "pan", "card", "cc", "pin"];
    WITHIN.iter().any(|s| k.contains(s)) || WHOLE.contains(&k.as_str())
}

/// Whether text is a payment card number: 13 to 19 digits (spaces and dashes allowed between
/// them) that pass the Luhn check.
pub(crate) fn looks_like_card(text: &str) -> bool {
    let digits: Vec<u32> = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A JSON value with secret members and card numbers replaced by `***`.
pub(crate) fn value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret(k) {
                        Value::String("***".into())
                    } else {
                        value(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(value).collect()),
        Value::String(s) if looks_like_card(s) => Value::String("***".into()),
        Value::Number(n) if looks_like_card(&n.to_string()) => Value::String("***".into()),
        other => other.clone(),
    }
}

/// [`value`], written as JSON text.
pub(crate) fn text(v: &Value) -> String {
    value(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_card_numbers_never_show() {
        let v = json!({"items": [{"sku": "A"}], "session_id": "s", "headers": {"Authorization": "Bearer x"}, "apiKey": "k",
                       "payment": {"holder": "Ali", "number": "4111 1111 1111 1111", "n2": 5500000000000004u64}});
        let r = text(&v);
        assert!(
            !r.contains("Bearer") && !r.contains("\"s\"") && !r.contains("\"k\""),
            "{r}"
        );
        assert!(
            !r.contains("4111") && !r.contains("5500000000000004"),
            "{r}"
        );
        assert!(
            r.contains("\"sku\":\"A\"") && r.contains("\"holder\":\"Ali\""),
            "{r}"
        );
        // Not every long number is a card: ids and amounts stay.
        assert!(!looks_like_card("587300354"));
        assert!(!looks_like_card("4111111111111112"));
    }

    #[test]
    fn secrets_are_found_whatever_their_spelling() {
        for k in [
            "X-Api-Key",
            "api_key",
            "PASSWD",
            "client_secret",
            "Cookie",
            "session_id",
            "ccNumber",
            "cvv",
            "sign",
            "PAN",
            "authSessionId",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in [
            "sku",
            "warehouse",
            "quantity",
            "key",
            "remote_id",
            "productId",
            "company",
            "design",
            "japan",
            "spinner",
        ] {
            assert!(!is_secret(k), "{k}");
        }
    }
}
