//! The signed-service profile (GittiGidiyor listing API style).
//!
//! Every call carries HTTP Basic credentials of the account's "role" user and, as its first
//! three parameters, `apiKey`, `sign` and `time`, with `lang` last. `sign` must equal
//! `md5(apiKey + secret + time)` in hex (either case), `time` (epoch milliseconds) must be
//! within the window, and a reused (apiKey, sign, time) is refused unless the account allows
//! it. Results are wrapped in `<return>` with `ackCode`, `responseTime` and `timeElapsed`;
//! failures of the call are `ackCode=failure` with an `error` element in the caller's `lang`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{Datelike, FixedOffset, Timelike};
use md5::{Digest, Md5};
use serde_json::{Map, Value};

use crate::call::{Doc, Form, Tree, Val};
use crate::config::raw::ErrorText;
use crate::config::{ReusePolicy, SignedPlan};
use crate::error::{Error, Lang};

struct Account {
    api_key: String,
    secret: String,
    role_user: String,
    /// The role user and password as digests, for the constant-time Basic check.
    user_digest: Credential,
    password_digest: Credential,
    reuse: ReusePolicy,
    any_time: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("api_key", &self.api_key)
            .field("role_user", &self.role_user)
            .field("secret", &"***")
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) struct SignedProfile {
    pub name: String,
    window_ms: i64,
    default_lang: Lang,
    realm: String,
    offset: FixedOffset,
    pub result_element: String,
    accounts: Vec<Account>,
    by_key: HashMap<String, usize>,
    backend_errors: BTreeMap<String, ErrorText>,
    /// Used signatures, kept in the store: a restart, or another instance on the same
    /// PostgreSQL store, never accepts a replay inside the window.
    ledger: std::sync::Arc<crate::store::Store>,
}

/// Computes `md5(apiKey + secret + time)` as lowercase hex.
pub fn sign(api_key: &str, secret: &str, time: i64) -> String {
    hex(&sign_digest(api_key, secret, time))
}

fn sign_digest(api_key: &str, secret: &str, time: i64) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(api_key.as_bytes());
    h.update(secret.as_bytes());
    h.update(time.to_string().as_bytes());
    h.finalize().into()
}

/// Bytes as lowercase hex digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// A sign as sent (32 hex digits, either case) as its 16 bytes.
fn hex_digest(text: &str) -> Option<[u8; 16]> {
    let t = text.as_bytes();
    if t.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in t.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

use super::basic::Credential;

impl SignedProfile {
    /// The profile a plan describes; used signatures are kept in `ledger`.
    pub(crate) fn new(
        plan: &SignedPlan,
        ledger: std::sync::Arc<crate::store::Store>,
    ) -> SignedProfile {
        let accounts: Vec<Account> = plan
            .accounts
            .iter()
            .map(|a| Account {
                api_key: a.api_key.clone(),
                secret: a.secret.clone(),
                role_user: a.role_user.clone(),
                user_digest: Credential::new(&a.role_user),
                password_digest: Credential::new(&a.role_password),
                reuse: a.reuse,
                any_time: a.any_time,
            })
            .collect();
        let by_key = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.api_key.clone(), i))
            .collect();
        SignedProfile {
            name: plan.name.clone(),
            window_ms: plan.window_ms,
            default_lang: plan.default_lang,
            realm: plan.realm.clone(),
            offset: plan.offset,
            result_element: plan.result_element.clone(),
            accounts,
            by_key,
            backend_errors: plan.backend_errors.clone(),
            ledger,
        }
    }

    /// Checks HTTP Basic credentials; returns the authenticated role user.
    pub(crate) fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&str, Error> {
        let i = super::basic::check(
            authorization,
            self.accounts
                .iter()
                .map(|a| (&a.user_digest, &a.password_digest)),
        )?;
        Ok(&self.accounts[i].role_user)
    }

    pub(crate) fn www_authenticate(&self) -> String {
        super::basic::challenge(&self.realm)
    }

    /// The caller's language from `lang`, or the profile's default.
    pub(crate) fn lang(&self, params: &Val<'_>) -> Lang {
        params
            .get("lang")
            .and_then(Val::as_str)
            .and_then(Lang::parse)
            .unwrap_or(self.default_lang)
    }

    /// Verifies the signature parameters and removes them from `params`.
    pub(crate) async fn verify(
        &self,
        params: &mut Val<'_>,
        role_user: &str,
        now_ms: i64,
    ) -> Result<(), Error> {
        let (api_key, sign_given) = (take_string(params, "apiKey"), take_string(params, "sign"));
        let (api_key, sign_given) = (api_key.trim(), sign_given.trim());
        let time = params.take("time").and_then(|v| v.as_i64());
        params.take("lang");
        let time = time.ok_or_else(|| crate::protocol::xml::ReadError::MissingElement {
            path: "time".into(),
        })?;
        let account = self.by_key.get(api_key).map(|i| &self.accounts[*i]);
        // The window is checked first: it needs no secret, and an old or replayed message is
        // told apart from a forged one.
        if !account.is_some_and(|a| a.any_time) {
            if time < now_ms - self.window_ms {
                return Err(Error::TimeExpired {
                    time,
                    window_secs: (self.window_ms / 1000) as u64,
                });
            }
            if time > now_ms + self.window_ms {
                return Err(Error::TimeInFuture {
                    time,
                    window_secs: (self.window_ms / 1000) as u64,
                });
            }
        }
        let account = account.ok_or(Error::ApiKeyUnknown)?;
        let expected = sign_digest(&account.api_key, &account.secret, time);
        // Digest against digest: 16 bytes each, compared in constant time.
        let given = hex_digest(sign_given);
        let same = subtle::ConstantTimeEq::ct_eq(&expected[..], &given.unwrap_or_default()[..]);
        if !bool::from(same & subtle::Choice::from(u8::from(given.is_some()))) {
            return Err(Error::SignatureInvalid);
        }
        if account.role_user != role_user {
            // Both names are already authenticated facts, not secrets.
            return Err(Error::ApiKeyUserMismatch);
        }
        if account.reuse == ReusePolicy::Reject {
            let expected = hex(&expected);
            let expires = time + self.window_ms;
            let first = self
                .ledger
                .first_use(&expected, time, expires, now_ms)
                .await?;
            if !first {
                return Err(Error::SignatureReused);
            }
        }
        Ok(())
    }

    /// The values of the members every response carries ([`STAMP`]).
    fn stamp(&self, started: Instant, ack: &str) -> [String; 3] {
        let now = chrono::Utc::now().with_timezone(&self.offset);
        let mut elapsed = started.elapsed().as_millis().to_string();
        elapsed.push_str(" ms");
        [ack.to_string(), response_time(&now), elapsed]
    }

    /// What a successful response carries besides the operation's result.
    pub(crate) fn success(&self, started: Instant) -> Stamp<'_> {
        Stamp {
            element: &self.result_element,
            values: self
                .stamp(started, "success")
                .map(|v| Val::Str(Cow::Owned(v))),
        }
    }

    /// The `error` of a failure of the call in the caller's language: errorId, errorCode,
    /// message and viewMessage. Backend refusals take their id and texts from
    /// `backend_errors` when their code is listed there.
    pub(crate) fn failure_text(&self, err: &Error, lang: Lang) -> FailureText {
        if let Error::BackendRefused(r) = err
            && let Some(t) = self.backend_errors.get(&r.code)
        {
            let text = if lang == Lang::Tr { &t.tr } else { &t.en };
            let detail: Vec<String> = r.fields.iter().map(|f| f.to_string()).collect();
            let message = if detail.is_empty() {
                text.clone()
            } else {
                format!("{text} ({})", detail.join("; "))
            };
            return FailureText {
                id: t.id.clone(),
                code: r.code.to_ascii_uppercase(),
                message,
                view: text.clone(),
            };
        }
        let code = match err {
            Error::BackendRefused(r) => r.code.to_ascii_uppercase(),
            other => other.code().to_string(),
        };
        let message = err.message(lang);
        FailureText {
            id: err.number().unwrap_or(1999).to_string(),
            code,
            view: message.clone(),
            message,
        }
    }

    /// An `ackCode=failure` response for a failure of the call, in the caller's language.
    pub(crate) fn failure(&self, err: &Error, lang: Lang, started: Instant) -> Value {
        let t = self.failure_text(err, lang);
        let mut ret: Map<String, Value> = STAMP
            .into_iter()
            .zip(self.stamp(started, "failure"))
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let mut e = Map::new();
        e.insert("errorId".into(), Value::from(t.id));
        e.insert("errorCode".into(), Value::from(t.code));
        e.insert("message".into(), Value::from(t.message));
        e.insert("viewMessage".into(), Value::from(t.view));
        ret.insert("error".into(), Value::Object(e));
        let mut out = Map::new();
        out.insert(self.result_element.clone(), Value::Object(ret));
        Value::Object(out)
    }
}

/// What a failure of the call says: the legacy service's `error` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailureText {
    pub id: String,
    pub code: String,
    pub message: String,
    pub view: String,
}

fn take_string<'a>(params: &mut Val<'a>, key: &str) -> Cow<'a, str> {
    match params.take(key) {
        Some(Val::Str(s)) => s,
        Some(Val::Null) | None => Cow::Borrowed(""),
        Some(other) => Cow::Owned(other.to_json().to_string()),
    }
}

/// The members a signed service's successful response carries besides the result's, and the
/// element they go in.
pub(crate) struct Stamp<'p> {
    element: &'p str,
    /// The values of [`STAMP`]'s members.
    values: [Val<'static>; 3],
}

/// An operation's result as the response element's content: for a signed service, inside
/// the profile's result element, after the stamp's members (which win over members of the
/// result with the same names); otherwise as it is.
#[derive(Clone, Copy)]
pub(crate) enum Stamped<'p, T> {
    Plain(T),
    Outer(&'p Stamp<'p>, T),
    Inner(&'p Stamp<'p>, T),
    Member(&'p Val<'p>),
}

impl<'p, T> Stamped<'p, T> {
    pub(crate) fn new(stamp: Option<&'p Stamp<'p>>, result: T) -> Self {
        match stamp {
            Some(s) => Stamped::Outer(s, result),
            None => Stamped::Plain(result),
        }
    }
}

// The result's tree may live longer than the stamp ('t: 'p).
impl<'p, 't: 'p, T: Tree<'t>> Tree<'p> for Stamped<'p, T> {
    fn form(self) -> Form<'p> {
        match self {
            Stamped::Plain(t) => t.form(),
            Stamped::Outer(..) | Stamped::Inner(..) => Form::Obj,
            Stamped::Member(v) => Doc::Call(v).form(),
        }
    }

    fn member(self, key: &str) -> Option<Self> {
        match self {
            Stamped::Plain(t) => t.member(key).map(Stamped::Plain),
            Stamped::Outer(s, t) => (key == s.element).then_some(Stamped::Inner(s, t)),
            Stamped::Inner(s, t) => match STAMP.iter().position(|k| *k == key) {
                Some(i) => Some(Stamped::Member(&s.values[i])),
                // Only an object's members join the stamp's.
                None => match t.form() {
                    Form::Obj => t.member(key).map(Stamped::Plain),
                    _ => None,
                },
            },
            Stamped::Member(_) => None,
        }
    }

    fn item(self, i: usize) -> Option<Self> {
        match self {
            Stamped::Plain(t) => t.item(i).map(Stamped::Plain),
            _ => None,
        }
    }
}

/// The members every response carries, before the operation's own.
const STAMP: [&str; 3] = ["ackCode", "responseTime", "timeElapsed"];

/// `dd/MM/yyyy HH:mm:ss`, the service's response time, written digit by digit: `format!` with
/// six padded arguments was a few thousand instructions on every call.
fn response_time(now: &chrono::DateTime<FixedOffset>) -> String {
    let year = now.year();
    if !(0..=9999).contains(&year) {
        return format!(
            "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
            now.day(),
            now.month(),
            year,
            now.hour(),
            now.minute(),
            now.second()
        );
    }
    fn two(out: &mut String, n: u32, then: Option<char>) {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
        out.extend(then);
    }
    let mut out = String::with_capacity(19);
    two(&mut out, now.day(), Some('/'));
    two(&mut out, now.month(), Some('/'));
    two(&mut out, year as u32 / 100, None);
    two(&mut out, year as u32 % 100, Some(' '));
    two(&mut out, now.hour(), Some(':'));
    two(&mut out, now.minute(), Some(':'));
    two(&mut out, now.second(), None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn response_time_is_written_as_the_service_did() {
        use chrono::TimeZone;
        let tz = chrono::FixedOffset::east_opt(3 * 3600).unwrap();
        for (y, mo, d, h, mi, s) in [
            (2026, 12, 3, 9, 5, 7),
            (2027, 1, 31, 23, 59, 59),
            (999, 2, 1, 0, 0, 0),
            (10000, 3, 4, 5, 6, 7),
        ] {
            let t = tz.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap();
            let before = format!(
                "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
                t.day(),
                t.month(),
                t.year(),
                t.hour(),
                t.minute(),
                t.second()
            );
            assert_eq!(response_time(&t), before);
        }
        let t = tz.with_ymd_and_hms(2026, 12, 3, 9, 5, 7).unwrap();
        assert_eq!(response_time(&t), "03/12/2026 09:05:07");
    }

    /// A profile whose ledger is a fresh SQLite store.
    async fn profile(reuse: ReusePolicy) -> SignedProfile {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("soapbridge-signed-{}-{n}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = crate::store::Store::open(&format!("sqlite:{}", path.display()), "")
            .await
            .unwrap();
        let plan = SignedPlan {
            name: "p".into(),
            window_ms: 300_000,
            default_lang: Lang::Tr,
            realm: "r".into(),
            offset: FixedOffset::east_opt(3 * 3600).unwrap(),
            result_element: "return".into(),
            accounts: vec![crate::config::AccountPlan {
                api_key: "K".into(),
                secret: "S".into(),
                role_user: "u".into(),
                role_password: "p".into(),
                reuse,
                any_time: false,
            }],
            backend_errors: BTreeMap::new(),
            rate_limit: None,
        };
        SignedProfile::new(&plan, std::sync::Arc::new(store))
    }

    fn params(sign: &str, time: i64) -> Val<'_> {
        Val::Obj(vec![
            ("apiKey", Val::Str("K".into())),
            ("sign", Val::Str(sign.into())),
            ("time", Val::Int(time)),
            (
                "productIds",
                Val::Obj(vec![("item", Val::List(vec![Val::Int(1)]))]),
            ),
            ("lang", Val::Str("en".into())),
        ])
    }

    #[test]
    fn signature_is_md5_of_key_secret_time() {
        // md5("KS1000")
        assert_eq!(
            sign("K", "S", 1000),
            format!("{:x}", Md5::digest(b"KS1000"))
        );
    }

    #[tokio::test]
    async fn valid_call_in_either_case_passes_and_leaves_only_business_parameters() {
        let p = profile(ReusePolicy::Allow).await;
        let now = 1_700_000_000_000;
        let upper = sign("K", "S", now).to_uppercase();
        let mut m = params(&upper, now);
        p.verify(&mut m, "u", now + 1000).await.unwrap();
        assert_eq!(
            m.to_json(),
            serde_json::json!({"productIds": {"item": [1]}})
        );
    }

    #[tokio::test]
    async fn each_failure_has_its_error() {
        let p = profile(ReusePolicy::Reject).await;
        let now = 1_700_000_000_000;
        let ok = sign("K", "S", now);
        assert!(matches!(
            p.verify(&mut params("00", now), "u", now).await,
            Err(Error::SignatureInvalid)
        ));
        assert!(matches!(
            p.verify(&mut params(&ok, now), "u", now + 301_000).await,
            Err(Error::TimeExpired { .. })
        ));
        assert!(matches!(
            p.verify(&mut params(&ok, now), "u", now - 301_000).await,
            Err(Error::TimeInFuture { .. })
        ));
        assert!(matches!(
            p.verify(&mut params(&ok, now), "other", now).await,
            Err(Error::ApiKeyUserMismatch)
        ));
        p.verify(&mut params(&ok, now), "u", now).await.unwrap();
        assert!(matches!(
            p.verify(&mut params(&ok, now), "u", now).await,
            Err(Error::SignatureReused)
        ));
    }

    #[tokio::test]
    async fn basic_credentials_are_checked() {
        let p = profile(ReusePolicy::Reject).await;
        let h = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(p.authenticate(Some(h("u:p").as_bytes())).unwrap(), "u");
        assert!(p.authenticate(Some(h("u:x").as_bytes())).is_err());
        assert!(p.authenticate(None).is_err());
    }
}
