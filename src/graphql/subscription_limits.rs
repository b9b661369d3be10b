//! How many subscriptions and sockets a principal may hold (issue 12): one
//! token once opened 4 sockets × 50,000 `credentialEvents` and kept 1.2 GB.
//!
//! - `max_subscriptions_per_socket` (100): live operations on one socket;
//! - `max_subscriptions_per_principal` (200): live operations of one person
//!   (by user id) or runner (by token id) over all their sockets;
//! - `max_sockets_per_principal` (20): open sockets of one principal.
//!
//! Counts are per instance. Everything is RAII: a [`SocketSlot`] holds one
//! socket of its principal until dropped, a [`SubscriptionPermit`] one
//! operation until dropped, so whatever ends a subscription (the client's
//! `complete`/`stop`, the stream's end, the socket closing) releases it.
//! A permit is two pointers; the per-principal table holds one small entry
//! per principal with an open socket.
//!
//! [`RootFieldTicket`] makes "one operation" mean "one stream": a
//! subscription selects exactly one root field (the GraphQL spec's rule,
//! which async-graphql does not enforce), so aliases cannot multiply the
//! streams behind one permit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::auth::Principal;
use crate::graphql::GraphqlConfig;

/// The limit that refused a subscription or a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    SubscriptionsPerSocket(usize),
    SubscriptionsPerPrincipal(usize),
    SocketsPerPrincipal(usize),
}

impl Limit {
    /// Which limit, its value, the setting and what to do. The sockets
    /// limit's message is a close frame's reason, so it fits in 123 bytes.
    pub fn message(&self) -> String {
        match self {
            Limit::SubscriptionsPerSocket(n) => format!(
                "too many subscriptions on this connection: at most {n} at once (setting \
                 graphql.max_subscriptions_per_socket, env SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_SOCKET); \
                 complete one before starting another"
            ),
            Limit::SubscriptionsPerPrincipal(n) => format!(
                "too many subscriptions for this user or runner token over all its connections: at most {n} \
                 at once (setting graphql.max_subscriptions_per_principal, env \
                 SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_PRINCIPAL); complete one before starting another"
            ),
            Limit::SocketsPerPrincipal(n) => {
                format!("Too many connections: max_sockets_per_principal is {n} (SESAME_GRAPHQL__MAX_SOCKETS_PER_PRINCIPAL)")
            }
        }
    }
}

/// One principal's open sockets and live subscriptions.
#[derive(Default)]
struct Counts {
    /// Changed only under the table's lock.
    sockets: AtomicUsize,
    subscriptions: AtomicUsize,
}

/// The limits and the per-principal counts of one server instance.
pub struct SubscriptionLimits {
    per_socket: usize,
    per_principal: usize,
    sockets_per_principal: usize,
    principals: Mutex<HashMap<String, Arc<Counts>>>,
}

/// A stable key: a person by user id (all their tokens together), a runner
/// by its token id.
fn principal_key(principal: &Principal) -> String {
    match principal {
        Principal::Person { user_id, .. } => format!("user:{user_id}"),
        Principal::Runner { token_id, .. } => format!("runner:{token_id}"),
    }
}

/// Adds one to `counter` unless it is at `max` already.
fn try_increment(counter: &AtomicUsize, max: usize) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
}

impl SubscriptionLimits {
    pub fn new(config: &GraphqlConfig) -> Arc<SubscriptionLimits> {
        Arc::new(SubscriptionLimits {
            per_socket: config.max_subscriptions_per_socket,
            per_principal: config.max_subscriptions_per_principal,
            sockets_per_principal: config.max_sockets_per_principal,
            principals: Mutex::default(),
        })
    }

    /// A slot for one more socket of `principal`, or the limit that refuses it.
    pub fn open_socket(self: &Arc<Self>, principal: &Principal) -> Result<SocketSlot, Limit> {
        let key = principal_key(principal);
        let mut principals = self.principals.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = principals.entry(key.clone()).or_default().clone();
        let sockets = counts.sockets.load(Ordering::Acquire);
        if sockets >= self.sockets_per_principal {
            if sockets == 0 && counts.subscriptions.load(Ordering::Acquire) == 0 {
                principals.remove(&key);
            }
            return Err(Limit::SocketsPerPrincipal(self.sockets_per_principal));
        }
        counts.sockets.store(sockets + 1, Ordering::Release);
        drop(principals);
        Ok(SocketSlot { limits: self.clone(), key, counts, subscriptions: Arc::default() })
    }
}

/// One open socket of a principal; releases its place when dropped.
pub struct SocketSlot {
    limits: Arc<SubscriptionLimits>,
    key: String,
    counts: Arc<Counts>,
    /// Live operations on this socket.
    subscriptions: Arc<AtomicUsize>,
}

impl SocketSlot {
    /// A permit for one more operation on this socket, or the limit that
    /// refuses it (the socket's first, then the principal's).
    pub fn subscribe(&self) -> Result<SubscriptionPermit, Limit> {
        if !try_increment(&self.subscriptions, self.limits.per_socket) {
            return Err(Limit::SubscriptionsPerSocket(self.limits.per_socket));
        }
        if !try_increment(&self.counts.subscriptions, self.limits.per_principal) {
            self.subscriptions.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit::SubscriptionsPerPrincipal(self.limits.per_principal));
        }
        Ok(SubscriptionPermit {
            socket: self.subscriptions.clone(),
            principal: self.counts.clone(),
            _gauge: crate::metrics::GaugeGuard::subscription(),
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut principals = self.limits.principals.lock().unwrap_or_else(PoisonError::into_inner);
        let sockets = self.counts.sockets.load(Ordering::Acquire).saturating_sub(1);
        self.counts.sockets.store(sockets, Ordering::Release);
        // A socket's permits are dropped before its slot, so the principal's
        // entry goes with its last socket. (Should a permit ever outlive it,
        // the entry stays and is reused; it is never double-counted.)
        let idle = sockets == 0 && self.counts.subscriptions.load(Ordering::Acquire) == 0;
        if idle && principals.get(&self.key).is_some_and(|c| Arc::ptr_eq(c, &self.counts)) {
            principals.remove(&self.key);
        }
    }
}

/// One live operation, counted on its socket and for its principal until dropped.
pub struct SubscriptionPermit {
    socket: Arc<AtomicUsize>,
    principal: Arc<Counts>,
    /// `sesame_websocket_subscriptions`, while the permit lives.
    _gauge: crate::metrics::GaugeGuard,
}

impl Drop for SubscriptionPermit {
    fn drop(&mut self) {
        self.socket.fetch_sub(1, Ordering::AcqRel);
        self.principal.subscriptions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Put into each WebSocket operation's request data: the first root field
/// that opens a stream claims it, any other root field of the operation is
/// refused, so one permit stands for one stream.
#[derive(Default)]
pub struct RootFieldTicket(AtomicBool);

impl RootFieldTicket {
    /// True for the first caller only.
    pub fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn limits(per_socket: usize, per_principal: usize, sockets: usize) -> Arc<SubscriptionLimits> {
        SubscriptionLimits::new(&GraphqlConfig {
            max_subscriptions_per_socket: per_socket,
            max_subscriptions_per_principal: per_principal,
            max_sockets_per_principal: sockets,
            ..GraphqlConfig::default()
        })
    }

    fn person(user_id: &str, token_id: &str) -> Principal {
        Principal::Person { user_id: user_id.into(), role: Role::User, token_id: token_id.into() }
    }

    #[test]
    fn counts_are_released_on_drop_and_the_table_empties() {
        let limits = limits(2, 3, 2);
        let alice = person("u1", "t1");
        let first = limits.open_socket(&alice).unwrap();
        // Another token of the same person is the same principal.
        let second = limits.open_socket(&person("u1", "t2")).unwrap();
        assert_eq!(limits.open_socket(&alice).err(), Some(Limit::SocketsPerPrincipal(2)));
        let bob = limits.open_socket(&person("u2", "t3")).unwrap();

        let a = first.subscribe().unwrap();
        let b = first.subscribe().unwrap();
        assert_eq!(first.subscribe().err(), Some(Limit::SubscriptionsPerSocket(2)));
        let c = second.subscribe().unwrap();
        assert_eq!(second.subscribe().err(), Some(Limit::SubscriptionsPerPrincipal(3)));
        assert!(bob.subscribe().is_ok());
        drop(a);
        let _d = second.subscribe().unwrap();
        drop((b, c, _d));

        drop(first);
        let third = limits.open_socket(&alice).unwrap();
        drop((second, third, bob));
        assert!(limits.principals.lock().unwrap().is_empty());
    }

    #[test]
    fn a_ticket_is_claimed_once() {
        let ticket = RootFieldTicket::default();
        assert!(ticket.claim());
        assert!(!ticket.claim());
    }

    #[test]
    fn the_sockets_message_fits_a_close_frame() {
        let reason = Limit::SocketsPerPrincipal(usize::MAX).message();
        assert!(reason.len() <= 123, "{reason}");
    }
}
