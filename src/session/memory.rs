//! The in-memory session store of a single process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Session, SessionError, SessionStore, new_session_id};

pub struct MemorySessions {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    by_user: HashMap<i32, HashSet<String>>,
}

struct Entry {
    user_id: i32,
    expires_at: Instant,
}

/// How often expired sessions are swept out of memory.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl MemorySessions {
    /// A store whose sessions live `ttl` after their last use. A background task sweeps expired
    /// ones; it ends when the store is dropped.
    pub fn new(ttl: Duration) -> Arc<Self> {
        let store = Arc::new(Self {
            ttl,
            inner: Mutex::new(Inner::default()),
        });
        let weak: Weak<Self> = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(store) => store.sweep(),
                    None => break,
                }
            }
        });
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent with each other in a
        // way that matters more than losing every session, so keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        let expired: Vec<String> = inner
            .by_id
            .iter()
            .filter(|(_, entry)| entry.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            inner.remove(&id);
        }
    }
}

impl Inner {
    fn remove(&mut self, id: &str) {
        if let Some(entry) = self.by_id.remove(id)
            && let Some(ids) = self.by_user.get_mut(&entry.user_id)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_user.remove(&entry.user_id);
            }
        }
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, user_id: i32) -> Result<Session, SessionError> {
        let id = new_session_id();
        let mut inner = self.lock();
        inner.by_id.insert(
            id.clone(),
            Entry {
                user_id,
                expires_at: Instant::now() + self.ttl,
            },
        );
        inner.by_user.entry(user_id).or_default().insert(id.clone());
        Ok(Session { id, user_id })
    }

    async fn resolve(&self, id: &str) -> Result<Option<Session>, SessionError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.by_id.get_mut(id) {
            Some(entry) if entry.expires_at > now => {
                entry.expires_at = now + self.ttl;
                Ok(Some(Session {
                    id: id.to_owned(),
                    user_id: entry.user_id,
                }))
            }
            Some(_) => {
                inner.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn revoke(&self, id: &str) -> Result<(), SessionError> {
        self.lock().remove(id);
        Ok(())
    }

    async fn revoke_user(&self, user_id: i32) -> Result<usize, SessionError> {
        let mut inner = self.lock();
        let ids = inner.by_user.remove(&user_id).unwrap_or_default();
        for id in &ids {
            inner.by_id.remove(id);
        }
        Ok(ids.len())
    }
}
