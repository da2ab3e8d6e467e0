//! What the HTTP handlers share: the store (behind a lock never held across an await), its
//! blobs (written without the lock), this server's credentials and login tokens, and the
//! optional response tap of the conformance tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use crate::store::{Blobs, Store};
use time::OffsetDateTime;

/// One response the server sent, recorded when a tap is installed.
#[derive(Debug, Clone)]
pub struct TapRecord {
    /// HTTP method.
    pub method: String,
    /// Route template (`/api/v1/repositories/{repository}`), as in the OpenAPI spec.
    pub route: String,
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body (JSON responses only).
    pub body: Vec<u8>,
}

/// Where recorded responses go.
pub type Tap = Arc<Mutex<Vec<TapRecord>>>;

/// State shared by the handlers.
#[derive(Debug)]
pub struct AppState {
    store: Mutex<Store>,
    /// The store's blobs.
    pub blobs: Blobs,
    access_key_id: String,
    secret_access_key: String,
    tokens: Mutex<HashMap<String, i64>>,
    /// Where responses are recorded, if anywhere.
    pub tap: Option<Tap>,
    /// Server start, seconds since epoch.
    pub started: i64,
}

impl AppState {
    /// The state of a server over `store` accepting one key pair.
    pub fn new(
        store: Store,
        access_key_id: &str,
        secret_access_key: &str,
        tap: Option<Tap>,
    ) -> Self {
        Self {
            blobs: store.blobs(),
            store: Mutex::new(store),
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            tokens: Mutex::new(HashMap::new()),
            tap,
            started: OffsetDateTime::now_utc().unix_timestamp(),
        }
    }

    /// Locks the store (never held across an await).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the key pair is this server's.
    pub fn check_key(&self, id: &str, secret: &str) -> bool {
        id == self.access_key_id && secret == self.secret_access_key
    }

    /// A new login token and its expiry (seconds since epoch, one hour).
    pub fn issue_token(&self) -> (String, i64) {
        let bytes: [u8; 24] = rand::rng().random();
        let token = hex::encode(bytes);
        let expires = OffsetDateTime::now_utc().unix_timestamp() + 3600;
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), expires);
        (token, expires)
    }

    /// Whether `token` was issued here and has not expired.
    pub fn token_valid(&self, token: &str) -> bool {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .is_some_and(|exp| *exp > OffsetDateTime::now_utc().unix_timestamp())
    }
}
