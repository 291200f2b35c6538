//! The shell around [`strand_core::quota`]: per-principal byte-rate meters shared by every
//! shard, and the configured quotas.
//!
//! A connection looks its principal's meters up once (when it starts, and again when it
//! authenticates) and then charges them with a compare-and-swap per request: no lock on the
//! data path, and connections of one principal on different shards share one meter, so a
//! principal's quota is per node whichever shard its connections landed on (Kafka's quotas
//! are per broker too). A principal with no quota configured gets no meter and costs nothing.
//!
//! Quotas: the node-wide default (`quota_produce_bytes_per_sec`, `quota_fetch_bytes_per_sec`)
//! applies to each principal on its own; a per-user quota replaces it for that user. Without
//! authentication every client is the principal `ANONYMOUS` and shares one meter, as in Kafka.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strand_core::quota::{charge, Quota};

/// The principal of a connection that has not authenticated.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Request bytes of produces.
    Produce,
    /// Answer bytes of fetches.
    Fetch,
}

/// Byte rates for one principal; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    pub produce: Option<u64>,
    pub fetch: Option<u64>,
}

/// One meter: the GCRA theoretical arrival time, in ns since the registry's epoch.
#[derive(Debug)]
struct Meter {
    quota: Quota,
    tat_ns: AtomicU64,
}

impl Meter {
    fn new(bytes_per_sec: u64) -> Self {
        Meter { quota: Quota::per_sec(bytes_per_sec), tat_ns: AtomicU64::new(0) }
    }

    /// Charges `bytes` at `now_ns`; the throttle in ns.
    fn charge(&self, now_ns: u64, bytes: u64) -> u64 {
        let mut tat = self.tat_ns.load(Ordering::Acquire);
        loop {
            let c = charge(self.quota, tat, now_ns, bytes);
            match self.tat_ns.compare_exchange_weak(tat, c.tat_ns, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return c.throttle_ns,
                Err(seen) => tat = seen,
            }
        }
    }
}

/// A principal's meters, held by each of its connections.
#[derive(Debug, Default)]
pub struct Meters {
    produce: Option<Meter>,
    fetch: Option<Meter>,
    epoch: Option<Instant>,
}

impl Meters {
    /// Charges `bytes` in `direction`; how long the client must wait (zero when unmetered).
    pub fn charge(&self, direction: Direction, bytes: u64) -> Duration {
        let meter = match direction {
            Direction::Produce => &self.produce,
            Direction::Fetch => &self.fetch,
        };
        let (Some(meter), Some(epoch)) = (meter, self.epoch) else {
            return Duration::ZERO;
        };
        let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(meter.charge(now, bytes))
    }

    /// Whether any direction is metered.
    pub fn is_metered(&self) -> bool {
        self.produce.is_some() || self.fetch.is_some()
    }
}

/// Every principal's meters and quotas, one per node.
#[derive(Debug)]
pub struct QuotaRegistry {
    epoch: Instant,
    default: Rates,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per-user quotas replacing the default.
    users: HashMap<String, Rates>,
    /// Meters handed out, by principal; dropped when the quotas change (connections pick
    /// up the new ones when they next look up).
    meters: HashMap<String, Arc<Meters>>,
}

impl QuotaRegistry {
    /// A registry applying `default` to every principal without a quota of its own.
    pub fn new(default: Rates) -> Self {
        QuotaRegistry { epoch: Instant::now(), default, inner: Mutex::new(Inner::default()) }
    }

    /// A registry with `users`' own quotas besides the default.
    pub fn with_users(default: Rates, users: HashMap<String, Rates>) -> Self {
        let registry = QuotaRegistry::new(default);
        registry.set_users(users);
        registry
    }

    /// The meters of `principal` (looked up at connection start and authentication, never
    /// per request).
    pub fn meters(&self, principal: &str) -> Arc<Meters> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = inner.meters.get(principal) {
            return m.clone();
        }
        let rates = inner.users.get(principal).copied().unwrap_or(self.default);
        let meters = Arc::new(Meters {
            produce: rates.produce.map(Meter::new),
            fetch: rates.fetch.map(Meter::new),
            epoch: Some(self.epoch),
        });
        inner.meters.insert(principal.to_string(), meters.clone());
        meters
    }

    /// Replaces the per-user quotas (e.g. after the user store changed).
    pub fn set_users(&self, users: HashMap<String, Rates>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.users != users {
            inner.users = users;
            inner.meters.clear();
        }
    }

    /// The rates that apply to `principal`.
    pub fn rates(&self, principal: &str) -> Rates {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.users.get(principal).copied().unwrap_or(self.default)
    }
}

/// One connection's side of the quotas: its principal's meters and until when the node
/// does not read it (the "muted channel" of Kafka's quotas).
#[derive(Debug)]
pub struct ConnQuota {
    meters: RefCell<Arc<Meters>>,
    /// The principal `meters` belong to; `None` = `ANONYMOUS`.
    principal: RefCell<Option<std::rc::Rc<str>>>,
    muted_until: Cell<Option<Instant>>,
}

impl ConnQuota {
    /// A connection of `principal` (`ANONYMOUS` until it authenticates).
    pub fn new(registry: &QuotaRegistry, principal: &str) -> Self {
        ConnQuota {
            meters: RefCell::new(registry.meters(principal)),
            principal: RefCell::new(None),
            muted_until: Cell::new(None),
        }
    }

    /// The connection authenticated as `principal`: its meters from now on.
    pub fn set_principal(&self, registry: &QuotaRegistry, principal: &str) {
        *self.meters.borrow_mut() = registry.meters(principal);
    }

    /// Follows the connection's principal (`None` = not authenticated): called per request,
    /// it looks meters up only when the principal changed (after authentication).
    pub fn follow(&self, registry: &QuotaRegistry, principal: Option<std::rc::Rc<str>>) {
        if *self.principal.borrow() == principal {
            return;
        }
        self.set_principal(registry, principal.as_deref().unwrap_or(ANONYMOUS));
        *self.principal.borrow_mut() = principal;
    }

    /// Charges `bytes` in `direction`; the throttle in ms for the answer (0 within quota).
    /// A throttled connection is muted for that long.
    pub fn charge(&self, direction: Direction, bytes: u64) -> u32 {
        let meters = self.meters.borrow().clone();
        let throttle = meters.charge(direction, bytes);
        if throttle.is_zero() {
            return 0;
        }
        let until = Instant::now() + throttle;
        if self.muted_until.get().is_none_or(|m| m < until) {
            self.muted_until.set(Some(until));
        }
        strand_core::quota::throttle_ms(u64::try_from(throttle.as_nanos()).unwrap_or(u64::MAX))
    }

    /// How long the reader must still wait before reading the next request (zero when not
    /// muted).
    pub fn muted_for(&self) -> Duration {
        match self.muted_until.get() {
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.muted_until.set(None);
                }
                left
            }
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmetered_principals_cost_nothing() {
        let reg = QuotaRegistry::new(Rates::default());
        let m = reg.meters(ANONYMOUS);
        assert!(!m.is_metered());
        assert_eq!(m.charge(Direction::Produce, u64::MAX), std::time::Duration::ZERO);
    }

    #[test]
    fn default_applies_per_principal_and_users_override() {
        let reg = QuotaRegistry::new(Rates { produce: Some(1_000), fetch: None });
        let a = reg.meters("alice");
        let b = reg.meters("bob");
        // Each principal has its own second of credit (1 000 bytes).
        assert!(a.charge(Direction::Produce, 1_000).is_zero());
        assert!(b.charge(Direction::Produce, 1_000).is_zero());
        // Alice's next 500 bytes are half a second over (within a few ms of test time).
        let over = a.charge(Direction::Produce, 500);
        assert!(over > std::time::Duration::from_millis(400), "{over:?}");
        assert!(a.charge(Direction::Fetch, u64::MAX).is_zero());
        // A connection of alice on another shard shares her meter.
        assert!(!reg.meters("alice").charge(Direction::Produce, 1).is_zero());

        let mut users = HashMap::new();
        users.insert("alice".to_string(), Rates { produce: None, fetch: Some(10) });
        reg.set_users(users);
        let a = reg.meters("alice");
        assert!(a.charge(Direction::Produce, u64::MAX).is_zero());
        assert!(!a.charge(Direction::Fetch, 1_000).is_zero());
        assert_eq!(reg.rates("bob"), Rates { produce: Some(1_000), fetch: None });
    }

    #[test]
    fn a_throttled_connection_is_muted_for_the_throttle() {
        let reg = QuotaRegistry::new(Rates { produce: None, fetch: Some(1_000) });
        let conn = ConnQuota::new(&reg, ANONYMOUS);
        assert_eq!(conn.charge(Direction::Fetch, 1_000), 0);
        assert!(conn.muted_for().is_zero());
        let ms = conn.charge(Direction::Fetch, 1_000);
        assert!((990..=1_000).contains(&ms), "{ms}");
        let muted = conn.muted_for();
        assert!(muted > Duration::from_millis(900) && muted <= Duration::from_secs(1), "{muted:?}");
        conn.set_principal(&reg, "alice");
        assert_eq!(conn.charge(Direction::Fetch, 1_000), 0, "alice has her own meter");
    }

    #[test]
    fn a_connection_follows_its_principal_to_the_users_own_quota() {
        let mut users = HashMap::new();
        users.insert("alice".to_string(), Rates { produce: Some(100), fetch: None });
        let reg = QuotaRegistry::with_users(Rates::default(), users);
        let conn = ConnQuota::new(&reg, ANONYMOUS);
        assert_eq!(conn.charge(Direction::Produce, 1_000_000), 0, "anonymous is unlimited here");
        conn.follow(&reg, Some(std::rc::Rc::from("alice")));
        assert_eq!(conn.charge(Direction::Produce, 100), 0, "alice's burst");
        assert!(conn.charge(Direction::Produce, 100) > 900, "then alice's 100 B/s");
        conn.follow(&reg, Some(std::rc::Rc::from("alice")));
        assert!(conn.charge(Direction::Produce, 1) > 0, "following the same principal keeps the meter");
    }
}
