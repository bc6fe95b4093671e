//! The property on the stream projector's core: for any log and any
//! delivery schedule the transports allow (duplicates, per-item order only,
//! bisected batches, partial failures with redelivery of later records,
//! crashes between writes), the read models after convergence equal the
//! fold from scratch, and every state on the way is a consistent cut.

use std::collections::BTreeSet;

use ledger_core::{Envelope, StreamKind, StreamVersion};
use ledger_store::views::{MemoryState, ViewKey};
use projector::plan::ACTIONS_MIN;
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestCaseError};

use crate::history::{Log, LogShape, generate};
use crate::oracle::{Cuts, assert_converged, read_model_diff};
use crate::transport::{Kinesis, Knobs, Tally, run, stored_version};

/// XorShift: drawing cases with ChaCha costs more than running them in a
/// debug build, and nothing here needs a cryptographic generator.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
}

fn log_shape() -> impl Strategy<Value = LogShape> {
    (
        any::<u64>(),
        1u32..=2,
        0u32..3,
        1u32..=3,
        2u32..=3,
        3u32..=6,
        5u32..=20,
        0u64..=60,
    )
        .prop_map(
            |(
                seed,
                tenants,
                first_day_offset,
                days,
                vendors,
                employees,
                sales_per_day,
                more_percent,
            )| {
                LogShape {
                    seed,
                    tenants,
                    first_day_offset,
                    days,
                    vendors,
                    employees,
                    sales_per_day,
                    more_percent,
                }
            },
        )
}

/// A DynamoDB stream: every record once, in commit order per shard.
fn streams() -> impl Strategy<Value = Knobs> {
    (
        1usize..=4,
        1usize..=10,
        prop::option::of(ACTIONS_MIN..=8),
        0u64..=25,
        0u64..=50,
        0u64..=20,
        0u64..=50,
        0u64..=30,
        any::<u64>(),
    )
        .prop_map(
            |(shards, batch_max, actions, crash, concurrent, zombie, bisect, ignored, seed)| {
                Knobs {
                    shards,
                    batch_max,
                    kinesis: None,
                    actions,
                    crash_percent: crash,
                    concurrent_percent: concurrent,
                    zombie_percent: zombie,
                    bisect_percent: bisect,
                    ignored_percent: ignored,
                    seed,
                }
            },
        )
}

/// Kinesis Data Streams for DynamoDB: also duplicates and reordering.
fn kinesis() -> impl Strategy<Value = Knobs> {
    (streams(), 2usize..=10, 1usize..=5, 0u64..=40).prop_map(
        |(knobs, batch_max, block, duplicate_percent)| Knobs {
            batch_max,
            kinesis: Some(Kinesis {
                block: 1 + (block - 1) % (batch_max / 2),
                duplicate_percent,
            }),
            ..knobs
        },
    )
}

/// Either transport, with small writes and frequent faults: most batches
/// need several atomic writes and many die between them.
fn crashes() -> impl Strategy<Value = Knobs> {
    (
        prop_oneof![streams(), kinesis()],
        ACTIONS_MIN..=5,
        20u64..=50,
    )
        .prop_map(|(knobs, actions, crash_percent)| Knobs {
            actions: Some(actions),
            crash_percent,
            ..knobs
        })
}

/// Runs `log` under `knobs`, checking every step is a consistent cut and
/// nothing is parked, then that the table equals the fold from scratch.
pub fn converges(log: &Log, knobs: &Knobs) -> Result<Tally, String> {
    let envelopes = log.envelopes();
    let cuts = Cuts::new(&envelopes);
    let mut watch = cuts.watch();
    let mut check = |state: &MemoryState| {
        watch.check(state)?;
        if state.parked.is_empty() {
            Ok(())
        } else {
            Err(format!("parked: {:?}", state.parked))
        }
    };
    let run = runtime().block_on(run(log, knobs, &mut check))?;
    assert_converged(&run.state, &envelopes)?;
    Ok(run.tally)
}

/// How a record is damaged.
#[derive(Debug, Clone, Copy)]
pub enum Damage {
    /// Half its bytes are gone.
    Truncated,
    /// Its format byte is one no codec knows.
    UnknownFormat,
    /// It holds another stream's event: it decodes, but not to its key.
    OtherEvent,
}

/// A log with one event of an order or credit stream damaged.
pub struct Poisoned {
    pub log: Log,
    pub pk: String,
    pub version: u64,
    /// The stream's last version.
    pub last: u64,
    /// The log without the poisoned stream from the poison on: what every
    /// other stream (and the poisoned one up to the poison) converges to.
    pub expected: Vec<Envelope>,
}

/// Poisons version `1 + at % n` of the `pick`-th `kind` stream with at
/// least two events (`n` of them); `None` if the log has none.
pub fn poison(
    log: &Log,
    kind: StreamKind,
    pick: usize,
    at: u64,
    damage: Damage,
) -> Option<Poisoned> {
    let candidates = log.streams_with_at_least(kind, 2);
    let pk = candidates.get(pick % candidates.len().max(1))?;
    let last = log.stream(pk).len() as u64;
    Some(poison_at(log, pk, 1 + at % last, damage))
}

/// Poisons `version` of stream `pk`.
pub fn poison_at(log: &Log, pk: &str, version: u64, damage: Damage) -> Poisoned {
    let pk = pk.to_owned();
    let last = log.stream(&pk).len() as u64;
    assert!((1..=last).contains(&version));
    let mut damaged = log.clone();
    let other = log
        .events
        .iter()
        .find(|e| e.pk != pk)
        .expect("a log has more than one stream")
        .bytes
        .clone();
    let target = damaged
        .events
        .iter_mut()
        .find(|e| e.pk == pk && e.version == version)
        .expect("the version is in the log");
    match damage {
        Damage::Truncated => target.bytes.truncate(target.bytes.len() / 2),
        Damage::UnknownFormat => target.bytes[0] = 0xEE,
        Damage::OtherEvent => target.bytes = other,
    }
    let expected = log
        .events
        .iter()
        .filter(|e| !(e.pk == pk && e.version >= version))
        .map(|e| e.envelope.clone())
        .collect();
    Poisoned {
        log: damaged,
        pk,
        version,
        last,
        expected,
    }
}

impl Poisoned {
    /// `Ok` when only the poisoned stream's records from the poison on
    /// are parked (all of them if `complete`), the poison first and the
    /// others behind it.
    pub fn check_parked(&self, state: &MemoryState, complete: bool) -> Result<(), String> {
        for ((pk, v), parked) in &state.parked {
            let behind = (*v != self.version).then_some(self.version);
            if *pk != self.pk || *v < self.version || *v > self.last {
                return Err(format!(
                    "parked {pk} v{v}, but only {} v{}..={} may be",
                    self.pk, self.version, self.last
                ));
            }
            if parked.behind != behind || parked.error.is_empty() {
                return Err(format!(
                    "parked {pk} v{v} as {parked:?}, expected behind {behind:?}"
                ));
            }
        }
        let want: BTreeSet<u64> = (self.version..=self.last).collect();
        let got: BTreeSet<u64> = state.parked.keys().map(|(_, v)| *v).collect();
        if complete && got != want {
            return Err(format!(
                "parked versions {got:?} of {}, expected {want:?}",
                self.pk
            ));
        }
        Ok(())
    }

    /// The poisoned stream's view key.
    pub fn key(&self) -> ViewKey {
        let (tenant_id, stream) =
            ledger_store::dynamodb::item::parse_pk(&self.pk).expect("the log's keys parse");
        ViewKey { tenant_id, stream }
    }

    /// `Ok` when the table has converged around the poison.
    pub fn check_converged(&self, state: &MemoryState) -> Result<(), String> {
        self.check_parked(state, true)?;
        let diff = read_model_diff(state, &self.expected);
        if !diff.is_empty() {
            return Err(diff.join("\n"));
        }
        let at = stored_version(state, &self.key());
        if at != StreamVersion::new(self.version - 1) {
            return Err(format!(
                "{} is at {at}, expected {}",
                self.pk,
                self.version - 1
            ));
        }
        Ok(())
    }
}

fn poison_run(poisoned: &Poisoned, knobs: &Knobs) -> Result<(), String> {
    // Damage changes a record's bytes, not the envelope beside them: every
    // stored view is still a prefix of the log as written.
    let cuts = Cuts::new(&poisoned.log.envelopes());
    let mut watch = cuts.watch();
    let mut check = |state: &MemoryState| {
        watch.check(state)?;
        poisoned.check_parked(state, false)
    };
    let run = runtime().block_on(run(&poisoned.log, knobs, &mut check))?;
    poisoned.check_converged(&run.state)
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::Truncated),
        Just(Damage::UnknownFormat),
        Just(Damage::OtherEvent)
    ]
}

proptest! {
    #![proptest_config(config(800))]

    #[test]
    fn any_dynamodb_stream_schedule_converges_to_the_fold(shape in log_shape(), knobs in streams()) {
        converges(&generate(&shape), &knobs).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn any_kinesis_schedule_converges_to_the_fold(shape in log_shape(), knobs in kinesis()) {
        converges(&generate(&shape), &knobs).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn crashes_between_small_writes_converge_to_the_fold(shape in log_shape(), knobs in crashes()) {
        converges(&generate(&shape), &knobs).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn poison_is_parked_with_its_stream_and_everything_else_converges(
        shape in log_shape(),
        knobs in prop_oneof![streams(), kinesis()],
        credit in any::<bool>(),
        pick in any::<usize>(),
        at in any::<u64>(),
        damage in damage(),
    ) {
        let shape = LogShape { more_percent: shape.more_percent.max(30), ..shape };
        let log = generate(&shape);
        let kind = if credit { StreamKind::Credit } else { StreamKind::Order };
        let poisoned = poison(&log, kind, pick, at, damage);
        prop_assume!(poisoned.is_some(), "no such stream with two events");
        let poisoned = poisoned.expect("assumed");
        poison_run(&poisoned, &knobs).map_err(TestCaseError::fail)?;
    }
}
