//! Deterministic simulation of the service scheduler ([`wharf_core::service::plan`])
//! and placement ([`wharf_core::placement::place`]) against many fake hosts,
//! with faults injected from a seed.
//!
//! One thread, no I/O, no wall clock: a discrete-event loop over a virtual
//! clock in milliseconds, every random choice drawn from one `StdRng`
//! seeded with the run's seed. The same seed therefore replays the same
//! run, event for event, and a failing seed can be rerun under a debugger:
//!
//! ```text
//! WHARF_SIM_SEED=1234 cargo test -p wharf-sim replay -- --nocapture
//! ```
//!
//! A run has two phases. During the *fault phase* hosts are lost, join,
//! disconnect and drain, plans are discarded as if their store write lost a
//! compare-and-swap, and the user deploys revisions (some broken) and
//! changes desired counts. Then the *quiet phase*: every agent reconnects,
//! no more faults, no broken revision is left being deployed, and every
//! service must settle within [`Config::quiet_ms`]. The invariants (see
//! [`invariants`]) are checked after every step; a violation panics with
//! the seed, the step and the last trace lines.

pub mod invariants;
pub mod world;

use wharf_core::clock::Millis;
use wharf_core::service::Settings;

/// The shape of a run; the seed picks everything else (host count within
/// `hosts`, services, revisions, faults).
#[derive(Debug, Clone)]
pub struct Config {
    /// Hosts at the start, drawn from this inclusive range.
    pub hosts: (usize, usize),
    /// REPLICA services, drawn from this inclusive range (plus one DAEMON).
    pub replica_services: (usize, usize),
    /// Length of the fault phase.
    pub fault_ms: Millis,
    /// Liveness bound: every service settles within this after faults stop.
    pub quiet_ms: Millis,
    /// The controller runs `plan` for every service this often.
    pub tick_ms: Millis,
    /// Faults and user actions are drawn this often during the fault phase.
    pub chaos_ms: Millis,
    /// Chance that a plan is discarded (a lost compare-and-swap).
    pub conflict_p: f64,
    /// STOPPED tasks are forgotten this long after they stopped.
    pub retention_ms: Millis,
    /// Keep every trace line in the report (otherwise only the hash).
    pub keep_trace: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hosts: (50, 100),
            replica_services: (2, 4),
            fault_ms: 6 * 60_000,
            quiet_ms: 10 * 60_000,
            tick_ms: 2_000,
            chaos_ms: 3_000,
            conflict_p: 0.1,
            retention_ms: 60_000,
            keep_trace: false,
        }
    }
}

/// The scheduler's tunables in the simulation: a short launch throttle so
/// that a broken revision trips the breaker well within the liveness bound.
pub fn settings() -> Settings {
    Settings {
        settle: 2_000,
        throttle_base: 2_000,
        throttle_max: 20_000,
    }
}

/// What a run did; `trace_hash` identifies the run's whole event trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub hosts: usize,
    pub services: usize,
    /// Events processed (each one a step, checked).
    pub steps: u64,
    /// Virtual time at which every service had settled.
    pub end_ms: Millis,
    /// Virtual time the quiet phase took to settle.
    pub settle_ms: Millis,
    pub trace_hash: u64,
    pub plans: u64,
    pub plans_discarded: u64,
    /// Plans of services at rest (`service::at_rest`), each checked to
    /// stay unchanged an hour later.
    pub rests: u64,
    pub tasks_started: u64,
    pub placement_failures: u64,
    pub hosts_lost: u64,
    pub hosts_joined: u64,
    pub disconnects: u64,
    pub drains: u64,
    pub deploys: u64,
    pub broken_deploys: u64,
    pub rollbacks: u64,
    pub scale_changes: u64,
    pub deletes: u64,
    /// Every trace line, when [`Config::keep_trace`] is set.
    pub trace: Vec<String>,
}

/// One simulated cluster, ready to run.
pub struct Sim {
    world: world::World,
}

impl Sim {
    pub fn new(seed: u64, config: Config) -> Sim {
        Sim {
            world: world::World::new(seed, config),
        }
    }

    /// Runs to the end of the quiet phase; panics on any invariant violation.
    pub fn run(mut self) -> Report {
        self.world.run();
        self.world.report()
    }
}
