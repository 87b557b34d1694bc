//! Runs a strategy for a number of cases, counts panics anywhere in the process (test
//! closures and server tasks alike), and tallies what the cases came to.

use std::fmt::{self, Debug, Display};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Panics anywhere in the process, counted by a hook that `count_panics` installs.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Installs the hook that counts panics (once; the previous hook still prints them) and
/// returns the count so far.
pub fn count_panics() -> usize {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// The panics from its start on, in the whole process.
pub struct PanicWatch(usize);

impl PanicWatch {
    pub fn start() -> PanicWatch {
        PanicWatch(count_panics())
    }

    /// Fails if anything panicked since `start`.
    pub fn assert_none(self) {
        let panics = count_panics() - self.0;
        assert_eq!(panics, 0, "{panics} panics (see the log above)");
    }
}

/// Runs `test` on `cases` values of `strategy` (panics are caught by proptest and shrunk to a
/// minimal input) and prints "NAME: N cases, no panic (T s)".
pub fn fuzz<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: Debug,
{
    count_panics();
    let ran = AtomicUsize::new(0);
    let t0 = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    println!(
        "{name}: {} cases, no panic ({:.1} s)",
        ran.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64()
    );
}

/// How many cases came to what, in the order the kinds were first named; shown as
/// "3 planned, 0 refused".
pub struct Tally(Mutex<Vec<(&'static str, usize)>>);

impl Tally {
    /// A tally that shows `kinds` even when none of them is counted.
    pub fn new(kinds: &[&'static str]) -> Tally {
        Tally(Mutex::new(kinds.iter().map(|&k| (k, 0)).collect()))
    }

    pub fn add(&self, kind: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }

    pub fn get(&self, kind: &str) -> usize {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// Prints "NAME: the tally".
    pub fn print(&self, name: &str) {
        println!("{name}: {self}");
    }

    /// Fails unless each `(kind, floor)` was counted at least `floor` times. A fuzzer whose
    /// every input died at its first check, or never reached one outcome, passes without
    /// this; floors belong well below what a run gives (the caller says why each is safe).
    pub fn assert_at_least(&self, name: &str, floors: &[(&str, usize)]) {
        let short: Vec<String> = floors
            .iter()
            .filter(|&&(kind, floor)| self.get(kind) < floor)
            .map(|&(kind, floor)| format!("{} {kind} (at least {floor})", self.get(kind)))
            .collect();
        assert!(
            short.is_empty(),
            "{name}: too few cases came to {}; the whole tally: {self}",
            short.join(", ")
        );
    }
}

impl Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (i, (kind, n)) in counts.iter().enumerate() {
            write!(f, "{}{n} {kind}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}
