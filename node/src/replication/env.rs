//! What a replica needs from the world besides its log: the peers it sends frames to
//! ([`Peers`]), a clock ([`Clock`]) and the way it stops the node on a storage failure
//! ([`Fatal`]), bundled as a [`ReplicaEnv`]. Production uses [`ReplicaEnv::real`]:
//! network links, `Instant` with glommio's timer, and the process exit of
//! `crate::fatal`. With the `sim` feature the replica simulator
//! (`node/tests/replica_sim.rs`) substitutes a frame sink, a virtual millisecond clock it
//! advances itself, and a handler that marks the simulated node crashed.
//!
//! Dispatch is static (an enum matched per call) and the simulated variants exist only in
//! test builds, like the log's `Storage` seam: the production path keeps its exact calls.
//! Architecture invariant: `ReplicatedPartition` reads no clock and exits no process
//! except through this module.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::link::Peers;

/// A replica's environment (see the module doc).
#[derive(Clone)]
pub struct ReplicaEnv {
    pub peers: Rc<Peers>,
    pub clock: Clock,
    pub fatal: Fatal,
}

impl ReplicaEnv {
    /// The production environment: `peers` over network links, the monotonic clock from
    /// now on, and a process exit on a fatal storage error.
    pub fn real(peers: Rc<Peers>) -> ReplicaEnv {
        ReplicaEnv { peers, clock: Clock::Real(Instant::now()), fatal: Fatal::Exit }
    }
}

/// Milliseconds since the replica started, and sleeping until a later millisecond.
#[derive(Clone)]
pub enum Clock {
    /// `Instant` elapsed since the given start; sleeps on glommio's timer.
    Real(Instant),
    /// The simulator's virtual time.
    #[cfg(feature = "sim")]
    Sim(SimClock),
}

impl Clock {
    /// Milliseconds since the clock's start.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::Real(start) => u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            #[cfg(feature = "sim")]
            Clock::Sim(clock) => clock.now_ms(),
        }
    }

    /// Completes `ms` milliseconds from now (or later).
    pub async fn sleep_ms(&self, ms: u64) {
        match self {
            Clock::Real(_) => {
                glommio::timer::sleep(Duration::from_millis(ms)).await;
            }
            #[cfg(feature = "sim")]
            Clock::Sim(clock) => clock.sleep_until(clock.now_ms().saturating_add(ms)).await,
        }
    }
}

/// What the replica does when its storage failed in a way that leaves the disk's state
/// unknown (`crate::fatal`).
#[derive(Clone)]
pub enum Fatal {
    /// Exit the process (`crate::fatal::stop_node`).
    Exit,
    /// Call the simulator's handler with the reason (it marks the node crashed), then
    /// return: the replica stops acting right after.
    #[cfg(feature = "sim")]
    Sim(Rc<dyn Fn(&str)>),
}

impl Fatal {
    /// Stops the node for `error` of `topic`/`partition`. Returns only in the simulation;
    /// the caller then stops the replica.
    pub fn stop_node(&self, topic: &str, partition: u32, error: &dyn std::fmt::Display) {
        match self {
            Fatal::Exit => crate::fatal::stop_node(topic, partition, error),
            #[cfg(feature = "sim")]
            Fatal::Sim(handler) => handler(&format!("partition {topic}/{partition}: storage failed: {error}")),
        }
    }
}

#[cfg(feature = "sim")]
pub use sim_clock::SimClock;

#[cfg(feature = "sim")]
mod sim_clock {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::task::{Poll, Waker};

    /// Virtual milliseconds shared by every simulated replica of a run: time moves only
    /// when the simulator calls [`SimClock::advance`], which wakes the sleeps it made due.
    /// Cheap to clone (one shared instance).
    #[derive(Clone, Default)]
    pub struct SimClock(Rc<RefCell<State>>);

    #[derive(Default)]
    struct State {
        now_ms: u64,
        /// Sleeps not yet woken: (deadline, waker). A dropped sleep's entry stays until
        /// its deadline passes (bounded by the sleeps the replicas make between advances).
        sleepers: Vec<(u64, Waker)>,
    }

    impl SimClock {
        /// A clock at 0 ms.
        pub fn new() -> SimClock {
            SimClock::default()
        }

        /// The current virtual time.
        pub fn now_ms(&self) -> u64 {
            self.0.borrow().now_ms
        }

        /// The earliest deadline a sleep waits for, if any.
        pub fn next_deadline_ms(&self) -> Option<u64> {
            self.0.borrow().sleepers.iter().map(|(at, _)| *at).min()
        }

        /// Moves time forward by `ms` and wakes every sleep now due.
        pub fn advance(&self, ms: u64) {
            let due: Vec<Waker> = {
                let mut state = self.0.borrow_mut();
                state.now_ms += ms;
                let now = state.now_ms;
                let (due, waiting) = std::mem::take(&mut state.sleepers).into_iter().partition(|(at, _)| *at <= now);
                state.sleepers = waiting;
                due.into_iter().map(|(_, waker)| waker).collect()
            };
            for waker in due {
                waker.wake();
            }
        }

        /// Completes once the virtual time reached `deadline_ms`.
        pub async fn sleep_until(&self, deadline_ms: u64) {
            std::future::poll_fn(|cx| {
                let mut state = self.0.borrow_mut();
                if state.now_ms >= deadline_ms {
                    return Poll::Ready(());
                }
                state.sleepers.push((deadline_ms, cx.waker().clone()));
                Poll::Pending
            })
            .await;
        }
    }
}
