//! Provider webhook routing: a provider's account key (WhatsApp phone_number_id, Telegram bot
//! id) to the tenant account it belongs to, built at start from the stored channel accounts.

use std::collections::HashMap;
use std::sync::Arc;

/// Routes of one provider, by the key its webhooks carry.
#[derive(Debug)]
pub struct Routes<R> {
    by_key: HashMap<String, Arc<R>>,
}

impl<R> Default for Routes<R> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
        }
    }
}

impl<R> Routes<R> {
    /// The route of `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<R>> {
        self.by_key.get(key)
    }

    /// All routes.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<R>> {
        self.by_key.values()
    }

    /// Whether no account is configured.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds (or replaces) the route of `key`.
    pub(crate) fn insert(&mut self, key: String, route: R) {
        self.by_key.insert(key, Arc::new(route));
    }
}
