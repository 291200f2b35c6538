//! Run settings shared by the reliability tests: the profile (quick for CI, long for
//! manual soak runs), seeds (printed, and overridable so any failing run can be replayed),
//! duration summaries, and where results are written.
//!
//! `STRAND_RELIABILITY=long` selects the long profile; `STRAND_SEED=N` fixes the seed. Every
//! seeded draw goes through [`SeedRng`] (ChaCha8), the generator of all of Strand's seeded
//! simulations and tests (`node/core/tests/seeds/mod.rs`).

use std::path::PathBuf;
use std::time::Duration;

use rand::{Rng, SeedableRng};

/// The generator of every seeded draw: ChaCha8, whose sequence is fixed by its algorithm,
/// so a recorded seed replays the same schedule after a `rand` upgrade (`StdRng`'s may
/// change between releases).
pub type SeedRng = rand_chacha::ChaCha8Rng;

/// The generator of a seed.
pub fn rng(seed: u64) -> SeedRng {
    SeedRng::seed_from_u64(seed)
}

/// How much work a test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The CI profile: minutes for the whole crate on two busy cores.
    Quick,
    /// The manual soak profile (`STRAND_RELIABILITY=long`, best with `--release`).
    Long,
}

impl Profile {
    /// The profile `STRAND_RELIABILITY` asks for (quick unless it says `long`).
    pub fn from_env() -> Profile {
        match std::env::var("STRAND_RELIABILITY").as_deref() {
            Ok("long") => Profile::Long,
            _ => Profile::Quick,
        }
    }

    /// `quick` or `long`, by profile.
    pub fn pick<T>(self, quick: T, long: T) -> T {
        match self {
            Profile::Quick => quick,
            Profile::Long => long,
        }
    }
}

/// The run's seed: `STRAND_SEED` if set, else random. Printed with the command replaying
/// it, so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed =
        std::env::var("STRAND_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen());
    println!("{test}: seed {seed}; replay: {}", replay_command(seed));
    seed
}

/// The command, to be pasted as is, that reruns the calling test with `seed` (and the
/// long profile if this run has it). The test binary's name is the `--test` target; the
/// test thread's name (libtest names it after the test) is the exact filter.
pub fn replay_command(seed: u64) -> String {
    let long = if Profile::from_env() == Profile::Long { "STRAND_RELIABILITY=long " } else { "" };
    let exe = std::env::current_exe().ok();
    let stem = exe.as_deref().and_then(|p| p.file_stem()).and_then(|s| s.to_str()).unwrap_or("");
    // Cargo names test binaries `<target>-<hash>`.
    let target = stem.rsplit_once('-').map_or(stem, |(target, _)| target);
    let filter = match std::thread::current().name() {
        Some(name) if name != "main" => format!(" {name} --exact"),
        _ => String::new(),
    };
    format!("{long}STRAND_SEED={seed} cargo test -p strand-reliability --test {target} --{filter} --nocapture")
}

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarizes `samples` (nearest-rank percentiles); all zero when empty.
    pub fn of(samples: &[Duration]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let Some(&max) = sorted.last() else { return Summary::default() };
        let rank = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Summary { count: sorted.len(), min: sorted[0], p50: rank(0.50), p99: rank(0.99), max }
    }

    /// The summary as a JSON object in milliseconds.
    pub fn to_json(self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        serde_json::json!({
            "count": self.count, "min_ms": ms(self.min), "p50_ms": ms(self.p50), "p99_ms": ms(self.p99), "max_ms": ms(self.max),
        })
    }
}

/// Directory results are written to: `$STRAND_RELIABILITY_OUT`, else `<workspace>/target/reliability`.
pub fn results_dir() -> PathBuf {
    let dir = std::env::var_os("STRAND_RELIABILITY_OUT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("reliability"),
        PathBuf::from,
    );
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Writes `value` as pretty JSON to `results_dir()/name.json` (best effort: results are a
/// by-product; the assertions are the test) and prints where it went.
pub fn write_result(name: &str, value: &serde_json::Value) {
    let path = results_dir().join(format!("{name}.json"));
    match serde_json::to_string_pretty(value).map(|text| std::fs::write(&path, text)) {
        Ok(Ok(())) => println!("{name}: results in {}", path.display()),
        Ok(Err(e)) => println!("{name}: could not write {}: {e}", path.display()),
        Err(e) => println!("{name}: could not encode results: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let s = Summary::of(&samples);
        assert_eq!((s.count, s.min, s.p50, s.p99, s.max), (100, ms(1), ms(50), ms(99), ms(100)));
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[ms(7)]).p99, ms(7));
    }
}
