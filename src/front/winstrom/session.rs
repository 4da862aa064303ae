//! Flexi's login sessions: `POST /login-logout/login.json` with a user's name and password
//! answers an `authSessionId`, which a client then sends instead of HTTP Basic (the
//! `X-authSessionId` header, the `authSessionId` query parameter or cookie) until it logs out
//! (`/login-logout/logout.json`) or the session is idle too long.
//!
//! A session belongs to the user and to the company profiles whose credentials it logged in
//! with: it opens those companies and no others. Sessions live in this process (they outlive
//! reloads, not restarts; with several instances behind a load balancer, a client keeps to one
//! instance or uses HTTP Basic). Only a digest of each session id is kept, so the table
//! neither holds the ids nor can be probed by timing its lookups.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// How long an unused session lives.
pub(crate) const IDLE_MS: i64 = 30 * 60 * 1000;
/// Sessions open at once at most (a login beyond it is refused until some expire).
pub(crate) const MAX_SESSIONS: usize = 10_000;

#[derive(Debug)]
struct Session {
    user: String,
    /// The names of the profiles the login's credentials are valid for.
    profiles: Vec<String>,
    last_used_ms: i64,
}

/// The open sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
    idle_ms: i64,
    max: usize,
}

/// Why no session was opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// As many sessions are open as may be.
    Full,
    /// The system gave no random bytes.
    NoRandom,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(IDLE_MS, MAX_SESSIONS)
    }
}

impl Sessions {
    pub(crate) fn new(idle_ms: i64, max: usize) -> Sessions {
        Sessions {
            open: Mutex::new(HashMap::new()),
            idle_ms,
            max,
        }
    }

    /// Opens a session for `user`, valid for `profiles`; returns its id (64 hex digits of
    /// system randomness).
    pub(crate) fn open(
        &self,
        user: &str,
        profiles: Vec<String>,
        now_ms: i64,
    ) -> Result<String, OpenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| OpenError::NoRandom)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max {
            open.retain(|_, s| now_ms - s.last_used_ms < self.idle_ms);
            if open.len() >= self.max {
                return Err(OpenError::Full);
            }
        }
        open.insert(
            digest(&id),
            Session {
                user: user.to_string(),
                profiles,
                last_used_ms: now_ms,
            },
        );
        Ok(id)
    }

    /// The user of session `id` if it is open and valid for `profile`; using it keeps it open.
    pub(crate) fn user(&self, id: &str, profile: &str, now_ms: i64) -> Option<String> {
        let key = digest(id);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let s = open.get_mut(&key)?;
        if now_ms - s.last_used_ms >= self.idle_ms {
            open.remove(&key);
            return None;
        }
        s.last_used_ms = now_ms;
        s.profiles
            .iter()
            .any(|p| p == profile)
            .then(|| s.user.clone())
    }

    /// Keeps session `id` open; whether it was.
    pub(crate) fn keep_alive(&self, id: &str, now_ms: i64) -> bool {
        let key = digest(id);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match open.get_mut(&key) {
            Some(s) if now_ms - s.last_used_ms < self.idle_ms => {
                s.last_used_ms = now_ms;
                true
            }
            Some(_) => {
                open.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Closes session `id`; whether it was open.
    pub(crate) fn close(&self, id: &str) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&digest(id)).is_some()
    }
}

/// The session id a request carries: the `X-authSessionId` header, the `authSessionId` query
/// parameter, or the `authSessionId` cookie (in that order).
pub(crate) fn id_of<B>(req: &http::Request<B>) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get("x-authsessionid")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.trim().to_string());
    }
    if let Some(q) = req.uri().query()
        && let Some((_, v)) =
            form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "authSessionId")
    {
        return Some(v.into_owned());
    }
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("authSessionId=").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_its_profiles_only_until_it_is_idle_or_closed() {
        let s = Sessions::new(1_000, 10);
        let id = s.open("winstrom", vec!["flexi-users".into()], 0).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(s.user(&id, "flexi-users", 500).as_deref(), Some("winstrom"));
        assert_eq!(s.user(&id, "other-users", 600), None);
        // Used at 500: alive until 1,500.
        assert_eq!(
            s.user(&id, "flexi-users", 1_400).as_deref(),
            Some("winstrom")
        );
        assert_eq!(s.user(&id, "flexi-users", 2_400), None, "idle too long");
        let id = s
            .open("winstrom", vec!["flexi-users".into()], 3_000)
            .unwrap();
        assert!(s.close(&id));
        assert_eq!(s.user(&id, "flexi-users", 3_001), None);
        assert_eq!(s.user("not-a-session", "flexi-users", 3_001), None);
    }

    #[test]
    fn the_table_is_bounded_and_expired_sessions_make_room() {
        let s = Sessions::new(1_000, 2);
        let a = s.open("a", vec![], 0).unwrap();
        s.open("b", vec![], 0).unwrap();
        assert_eq!(s.open("c", vec![], 10), Err(OpenError::Full));
        assert!(s.keep_alive(&a, 900));
        // b expired at 1,000; a was kept alive.
        assert!(s.open("c", vec![], 1_500).is_ok());
        assert_eq!(s.open("d", vec![], 1_500), Err(OpenError::Full));
        let ids: std::collections::HashSet<String> = (0..2)
            .map(|_| Sessions::default().open("x", vec![], 0).unwrap())
            .collect();
        assert_eq!(ids.len(), 2, "ids are random");
    }

    #[test]
    fn the_id_is_read_from_the_header_the_query_or_a_cookie() {
        let req = |b: http::request::Builder| b.body(()).unwrap();
        let r = req(http::Request::builder()
            .uri("/c/demo/cenik.json")
            .header("X-authSessionId", "h1"));
        assert_eq!(id_of(&r).as_deref(), Some("h1"));
        let r = req(http::Request::builder().uri("/c/demo/cenik.json?limit=1&authSessionId=q%2B1"));
        assert_eq!(id_of(&r).as_deref(), Some("q+1"));
        let r = req(http::Request::builder()
            .uri("/c/demo/cenik.json")
            .header("Cookie", "a=b; authSessionId=c1"));
        assert_eq!(id_of(&r).as_deref(), Some("c1"));
        let r = req(http::Request::builder().uri("/c/demo/cenik.json"));
        assert_eq!(id_of(&r), None);
    }
}
