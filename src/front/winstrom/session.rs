//! Flexi's login sessions: `POST /login-logout/login.json` with a user's name and password
//! answers an `authSessionId`, which a client then sends instead of HTTP Basic (the
//! `X-authSessionId` header, the `authSessionId` query parameter or cookie) until it logs out
//! (`/login-logout/logout.json`) or the session is idle too long.
//!
//! A session belongs to the user and to the company profiles whose credentials it logged in
//! with: it opens those companies and no others. With a store (`[store]`), sessions are kept
//! there: they survive restarts, and every instance sharing a PostgreSQL store knows them, so
//! a client behind a load balancer may log in on one instance and call another. Without one
//! they live in this process (and outlive reloads). Only a digest of each session id is kept,
//! so neither table holds the ids nor can be probed by timing its lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::profile::signed::hex;
use crate::store::Store;

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

/// The open sessions: in the store when there is one, else in memory.
#[derive(Debug)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
    store: Option<Arc<Store>>,
    idle_ms: i64,
    max: usize,
}

/// Why no session was opened or checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionError {
    /// As many sessions are open as may be.
    Full,
    /// The system gave no random bytes.
    NoRandom,
    /// The store did not answer.
    Store(String),
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(None, IDLE_MS, MAX_SESSIONS)
    }
}

impl Sessions {
    pub(crate) fn new(store: Option<Arc<Store>>, idle_ms: i64, max: usize) -> Sessions {
        Sessions {
            open: Mutex::new(HashMap::new()),
            store,
            idle_ms,
            max,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `user`, valid for `profiles`; returns its id (64 hex digits of
    /// system randomness).
    pub(crate) async fn open(
        &self,
        user: &str,
        profiles: Vec<String>,
        now_ms: i64,
    ) -> Result<String, SessionError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| SessionError::NoRandom)?;
        let id = hex(&bytes);
        let key = digest(&id);
        if let Some(store) = &self.store {
            let opened = store
                .session_open(
                    &hex(&key),
                    user,
                    &profiles,
                    now_ms,
                    self.idle_ms,
                    self.max as i64,
                )
                .await
                .map_err(|e| SessionError::Store(e.to_string()))?;
            return if opened {
                Ok(id)
            } else {
                Err(SessionError::Full)
            };
        }
        let mut open = self.table();
        if open.len() >= self.max {
            open.retain(|_, s| now_ms - s.last_used_ms < self.idle_ms);
            if open.len() >= self.max {
                return Err(SessionError::Full);
            }
        }
        open.insert(
            key,
            Session {
                user: user.to_string(),
                profiles,
                last_used_ms: now_ms,
            },
        );
        Ok(id)
    }

    /// The user and profiles of session `id` if it is open; using it keeps it open.
    async fn touch(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<(String, Vec<String>)>, SessionError> {
        let key = digest(id);
        if let Some(store) = &self.store {
            return store
                .session_use(&hex(&key), now_ms, self.idle_ms)
                .await
                .map_err(|e| SessionError::Store(e.to_string()));
        }
        let mut open = self.table();
        let Some(s) = open.get_mut(&key) else {
            return Ok(None);
        };
        if now_ms - s.last_used_ms >= self.idle_ms {
            open.remove(&key);
            return Ok(None);
        }
        s.last_used_ms = now_ms;
        Ok(Some((s.user.clone(), s.profiles.clone())))
    }

    /// The user of session `id` if it is open and valid for `profile`; using it keeps it open.
    pub(crate) async fn user(
        &self,
        id: &str,
        profile: &str,
        now_ms: i64,
    ) -> Result<Option<String>, SessionError> {
        Ok(self
            .touch(id, now_ms)
            .await?
            .filter(|(_, profiles)| profiles.iter().any(|p| p == profile))
            .map(|(user, _)| user))
    }

    /// Keeps session `id` open; whether it was.
    pub(crate) async fn keep_alive(&self, id: &str, now_ms: i64) -> Result<bool, SessionError> {
        Ok(self.touch(id, now_ms).await?.is_some())
    }

    /// Closes session `id`; whether it was open.
    pub(crate) async fn close(&self, id: &str) -> Result<bool, SessionError> {
        let key = digest(id);
        if let Some(store) = &self.store {
            return store
                .session_close(&hex(&key))
                .await
                .map_err(|e| SessionError::Store(e.to_string()));
        }
        Ok(self.table().remove(&key).is_some())
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

    async fn a_session_opens_its_profiles_only_until_it_is_idle_or_closed(s: Sessions) {
        let id = s
            .open("winstrom", vec!["flexi-users".into()], 0)
            .await
            .unwrap();
        assert_eq!(id.len(), 64);
        let user = |id: &str, p: &'static str, t: i64| {
            let id = id.to_string();
            let s = &s;
            async move { s.user(&id, p, t).await.unwrap() }
        };
        assert_eq!(
            user(&id, "flexi-users", 500).await.as_deref(),
            Some("winstrom")
        );
        assert_eq!(user(&id, "other-users", 600).await, None);
        // Used at 600: alive until 1,600.
        assert_eq!(
            user(&id, "flexi-users", 1_500).await.as_deref(),
            Some("winstrom")
        );
        assert_eq!(user(&id, "flexi-users", 2_600).await, None, "idle too long");
        let id = s
            .open("winstrom", vec!["flexi-users".into()], 3_000)
            .await
            .unwrap();
        assert!(s.close(&id).await.unwrap());
        assert_eq!(user(&id, "flexi-users", 3_001).await, None);
        assert_eq!(user("not-a-session", "flexi-users", 3_001).await, None);
        // Bounded: expired sessions make room.
        let a = s.open("a", vec![], 10_000).await.unwrap();
        s.open("b", vec![], 10_000).await.unwrap();
        assert_eq!(s.open("c", vec![], 10_010).await, Err(SessionError::Full));
        assert!(s.keep_alive(&a, 10_900).await.unwrap());
        // b expired at 11,000; a was kept alive.
        assert!(s.open("c", vec![], 11_500).await.is_ok());
        assert_eq!(s.open("d", vec![], 11_500).await, Err(SessionError::Full));
    }

    #[tokio::test]
    async fn in_memory() {
        a_session_opens_its_profiles_only_until_it_is_idle_or_closed(Sessions::new(None, 1_000, 2))
            .await;
        let ids: std::collections::HashSet<String> = [
            Sessions::default().open("x", vec![], 0).await.unwrap(),
            Sessions::default().open("x", vec![], 0).await.unwrap(),
        ]
        .into();
        assert_eq!(ids.len(), 2, "ids are random");
    }

    #[tokio::test]
    async fn in_the_store() {
        let dir = std::env::temp_dir().join(format!("soapbridge-sessions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sessions.db");
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(
            Store::open(&format!("sqlite:{}", path.display()), "")
                .await
                .unwrap(),
        );
        a_session_opens_its_profiles_only_until_it_is_idle_or_closed(Sessions::new(
            Some(store.clone()),
            1_000,
            2,
        ))
        .await;
        // Another instance on the same store knows a session this one opened.
        let one = Sessions::new(Some(store.clone()), 1_000, 10);
        let other = Sessions::new(Some(store), 1_000, 10);
        let id = one
            .open("winstrom", vec!["p".into()], 50_000)
            .await
            .unwrap();
        assert_eq!(
            other.user(&id, "p", 50_100).await.unwrap().as_deref(),
            Some("winstrom")
        );
        let _ = std::fs::remove_dir_all(&dir);
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
