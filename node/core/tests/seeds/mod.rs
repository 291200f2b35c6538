//! Seeds of Strand's seeded simulations and tests: one PRNG and one pair of variables.
//!
//! Every seeded run draws from [`SimRng`] (`rand_chacha::ChaCha8Rng`): its sequence is
//! fixed by the ChaCha algorithm, so a seed recorded today replays the same run after a
//! `rand` upgrade (`StdRng` promises no such thing). `STRAND_SEED=N` replays seed N (with a
//! trace where the simulation has one); `STRAND_SEEDS=N` sets how many seeds a multi-seed
//! simulation runs (`STRAND_SEEDS=100000` is the long mode). A seed that fails panics with a
//! message that starts with the seed and the one-line command replaying it.
//!
//! One file, included by path where it is needed (`node/core`'s simulations and unit
//! tests, `node`'s log tests), so there is one definition of all this.

#![allow(dead_code, reason = "each includer uses part of this module")]

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use rand::SeedableRng;

/// The generator of every seeded simulation and test.
pub type SimRng = rand_chacha::ChaCha8Rng;

/// `STRAND_SEED`: the one seed to replay, if set.
pub fn seed_replayed() -> Option<u64> {
    env_u64("STRAND_SEED")
}

/// `STRAND_SEEDS`, else `default`: how many seeds a multi-seed run covers.
pub fn seed_count(default: u64) -> u64 {
    env_u64("STRAND_SEEDS").unwrap_or(default)
}

/// The generator of one run.
pub fn rng(seed: u64) -> SimRng {
    SimRng::seed_from_u64(seed)
}

/// The random stream of one concern of a run: same key, same ChaCha stream number (so
/// concerns do not shift each other's draws when one of them draws more).
pub fn rng_stream(seed: u64, concern: u64) -> SimRng {
    let mut rng = SimRng::seed_from_u64(seed);
    rng.set_stream(concern);
    rng
}

/// Where a seed runs: what `cargo test` needs to run it alone.
#[derive(Clone, Copy)]
pub struct Replay {
    /// The package (`-p`).
    pub package: &'static str,
    /// The test target (`--test`), `None` for the library's unit tests (`--lib`).
    pub target: Option<&'static str>,
    /// The test function (a name filter that selects it).
    pub test_fn: &'static str,
}

impl Replay {
    /// The command, to be pasted as is, that replays `seed`.
    pub fn command(&self, seed: u64) -> String {
        let target = match self.target {
            Some(name) => format!("--test {name}"),
            None => "--lib".to_string(),
        };
        format!("STRAND_SEED={seed} cargo test -p {} {target} -- {}", self.package, self.test_fn)
    }

    /// "seed N: replay: COMMAND", the line a failure message starts with.
    pub fn line(&self, seed: u64) -> String {
        format!("seed {seed}: replay: {}", self.command(seed))
    }

    /// Runs `f(seed)`. A panic inside it (a checker's, or an assertion in the code under
    /// test) is raised again with a message that starts with the seed and the replay
    /// command, followed by the original message and where it was raised.
    pub fn run<T>(&self, seed: u64, f: impl FnOnce(u64) -> T) -> T {
        quiet_hook_install();
        PANIC_SEEN.with(|p| *p.borrow_mut() = None);
        IN_RUN.with(|r| *r.borrow_mut() = true);
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(seed)));
        IN_RUN.with(|r| *r.borrow_mut() = false);
        match result {
            Ok(value) => value,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("(panic without a message)");
                let at = PANIC_SEEN.with(|p| p.borrow_mut().take()).unwrap_or_default();
                panic!("seed {seed}: replay: {}\n  panicked at {at}: {what}", self.command(seed));
            }
        }
    }
}

thread_local! {
    /// Whether this thread is inside [`Replay::run`] (its panics are reported by it).
    static IN_RUN: RefCell<bool> = const { RefCell::new(false) };
    /// Where the last panic inside a run was raised.
    static PANIC_SEEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook that stays silent inside [`Replay::run`] (which reports the panic itself,
/// seed first) and defers to the previous hook everywhere else.
fn quiet_hook_install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_RUN.with(|r| *r.borrow()) {
                let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                PANIC_SEEN.with(|p| *p.borrow_mut() = Some(at));
            } else {
                previous(info);
            }
        }));
    });
}

/// The outcome of [`run_spread`]: one result per thread (one in all when a seed was replayed).
pub struct Spread<T> {
    pub results: Vec<T>,
    /// The seed replayed (`STRAND_SEED`), or `None` for a multi-seed run.
    pub replayed: Option<u64>,
    /// Seeds `0..seeds` ran (besides the regression seeds); 1 when a seed was replayed.
    pub seeds: u64,
    pub elapsed: Duration,
}

/// A multi-seed run whose seeds run inside an executor, where [`Replay::run`] (a
/// `catch_unwind` around a synchronous run) cannot wrap them. `STRAND_SEED` runs that one
/// seed with a trace; otherwise `regression` and `0..STRAND_SEEDS` (default `default`) are
/// spread over `threads` threads. `run(seeds, trace)` runs one thread's share and calls
/// [`seed_started`] as it starts each seed, so a panic anywhere in it (a checker's, or an
/// assertion in the code under test) is preceded by that seed's replay line. A thread that
/// panicked fails the caller.
pub fn run_spread<T: Send + 'static>(
    replay: Replay,
    default: u64,
    regression: &'static [u64],
    threads: u64,
    run: fn(Vec<u64>, bool) -> T,
) -> Spread<T> {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if let Some(seed) = CURRENT_SEED.with(Cell::get) {
            eprintln!("{}", replay.line(seed));
        }
        previous(info);
    }));
    let started = Instant::now();
    if let Some(seed) = seed_replayed() {
        let results = vec![run(vec![seed], true)];
        return Spread { results, replayed: Some(seed), seeds: 1, elapsed: started.elapsed() };
    }
    let seeds = seed_count(default);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let all = regression.iter().copied().chain(0..seeds);
            let mine: Vec<u64> = all.filter(|s| s % threads == t).collect();
            std::thread::spawn(move || run(mine, false))
        })
        .collect();
    let results = handles
        .into_iter()
        .map(|h| h.join().expect("a seed failed (its seed and replay command are printed above)"))
        .collect();
    Spread { results, replayed: None, seeds, elapsed: started.elapsed() }
}

/// Tells [`run_spread`]'s panic hook which seed this thread runs (`None`: between seeds).
pub fn seed_started(seed: Option<u64>) {
    CURRENT_SEED.with(|c| c.set(seed));
}

thread_local! {
    /// The seed this thread runs under [`run_spread`].
    static CURRENT_SEED: Cell<Option<u64>> = const { Cell::new(None) };
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")))
}
