//! The command handler: load, decide, seal, append, remember.
//!
//! One instance serves every tenant over any [`EventStore`], and any number
//! of instances may serve one store (Lambdas over one DynamoDB table): the
//! handler holds no state of the log. For each command it finds the
//! streams the command writes and reads ([`Aggregates::touches`]), locks
//! them within this process (writes exclusively, reads shared), loads their
//! heads in one round trip ([`EventStore::load_heads`]), decides with
//! ledger-core on them, seals the events, and appends them with the heads
//! they move and the idempotency record, all in one atomic append
//! conditioned on the heads it read. The store judges: a head or a version
//! that moved since it was read is a conflict, after which the command is
//! loaded and decided again, a bounded number of times.
//!
//! What a command reads and what it may miss:
//!
//! - Every head is read fresh for every command (a consistent read, no
//!   cache), so a vendor suspension or a settings change acknowledged
//!   before a command is received is seen by it. A command racing one
//!   (neither acknowledged before the other was received) may be decided
//!   either side of it; streams only read are not conditioned on, which
//!   costs nothing.
//! - The tenant's currency cannot change once an amount is recorded, and
//!   that fact lives in the tenant head: the first command that records an
//!   amount writes the tenant head, conditioned on its tag, in its own
//!   append. So a currency change and a first sale cannot both win, on any
//!   number of instances: no sale is decided in another currency than the
//!   tenant's. That costs one head write once per tenant.
//! - An order stream gets its head from its second event on: a checkout's
//!   sale is the order's whole state, the append's condition that its
//!   version is new proves the order did not exist, and a head would cost
//!   every checkout another item write. A payment or refund of an order
//!   without a head reads the order's stream (one or two events).
//! - A head missing where the stream has events (written by a bulk import,
//!   or a database from before heads), behind its stream, or of a format
//!   this build does not read, is rebuilt from the stream and written back
//!   with the next append that touches it.
//!
//! A conflict (another instance wrote a stream first) is followed by a
//! pause drawn at random below a bound that doubles per conflict
//! ([`CONFLICT_PAUSE_FIRST`] to [`CONFLICT_PAUSE_MAX`]), so instances
//! contending for one account do not retry in lockstep.
//!
//! The locks make conflicts between this process's own commands rare, so
//! concurrent checkouts on one employee queue instead of retrying; they
//! are never what keeps credit from being overdrawn: the store's condition
//! on the credit head is.

use ledger_core::codec::{self, Sealed};
use ledger_core::envelope::{Actor, Envelope};
use ledger_core::head::StreamHead;
use ledger_core::id::{CommandId, EventId, StreamId, StreamKind, TenantId};
use ledger_core::memory::{Aggregates, Command, SealContext, Touches};
use ledger_core::rejection::Rejection;
use ledger_core::time::Timestamp;
use ledger_store::{
    AppendError, AppendRequest, EventStore, HeadWrite, IdempotencyKey, IdempotencyRecord,
    IdempotencyWrite, StoreError, StoredHead, StreamAppend,
};
use rustc_hash::FxHasher;
use std::hash::{Hash as _, Hasher as _};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Most times one command is loaded and decided again after a conflict.
pub const COMMAND_ATTEMPTS_MAX: usize = 6;
/// Most times one attempt loads heads while the streams a command touches
/// grow (a payment learns its order's vendor and credit account from the
/// order's head).
const LOAD_ROUNDS_MAX: usize = 3;
/// The first bound of the pause after a conflict: the pause is drawn at
/// random below a bound that doubles with every conflict of the command
/// (full jitter), up to [`CONFLICT_PAUSE_MAX`]. Within one process the
/// stream locks keep commands from conflicting, so a conflict means another
/// instance wrote the stream; without the pause, instances hammering one
/// account retry in lockstep and use up their attempts together.
pub const CONFLICT_PAUSE_FIRST: std::time::Duration = std::time::Duration::from_millis(2);
/// The largest bound of a pause after a conflict.
pub const CONFLICT_PAUSE_MAX: std::time::Duration = std::time::Duration::from_millis(64);
/// Stream lock stripes; two streams sharing a stripe only queue, never deadlock.
const LOCK_STRIPES: usize = 4096;

/// Who sends a command: the tenant comes from the token, never the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub actor: Actor,
}

/// A command's idempotency key and the digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: IdempotencyKey,
    pub request_hash: [u8; 32],
}

/// What the decision was, for the caller to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accepted(Vec<Envelope>),
    Rejected(Rejection),
}

/// A command's answer: fresh, or replayed from its idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The rendered response, as stored with the idempotency record.
    pub response: Vec<u8>,
    /// `None` when the response is a replay of an earlier request.
    pub decision: Option<Decision>,
}

impl Executed {
    pub fn replayed(&self) -> bool {
        self.decision.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("the idempotency key was used before with a different request")]
    KeyReused,
    #[error("the streams kept changing underneath the command; retry it")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
}

pub struct CommandService<S> {
    store: S,
    locks: StreamLocks,
}

/// A stream as one attempt loaded it.
#[derive(Debug, Clone)]
struct Loaded {
    head: StreamHead,
    /// The stored head's tag (0: none stored), which the append names.
    etag: u64,
    /// No head was stored and the stream was not read: taken as empty, which
    /// only an append creating the stream proves.
    assumed: bool,
    /// The stored head is missing, behind or unreadable where the stream
    /// has events: the append writes the one rebuilt from the stream.
    repaired: bool,
}

/// The state one attempt decides on: the heads of the streams it touches.
struct Attempt {
    aggregates: Aggregates,
    streams: Vec<Loaded>,
}

impl Attempt {
    fn new(tenant_id: TenantId) -> Self {
        Self {
            aggregates: Aggregates::new(tenant_id),
            streams: Vec::new(),
        }
    }

    fn get(&self, stream: StreamId) -> Option<&Loaded> {
        self.streams.iter().find(|l| l.head.stream == stream)
    }

    fn assumed(&self) -> Vec<StreamId> {
        self.streams
            .iter()
            .filter(|l| l.assumed)
            .map(|l| l.head.stream)
            .collect()
    }
}

impl<S: EventStore> CommandService<S> {
    /// A handler over `store`. It reads nothing until the first command.
    pub fn new(store: S) -> Self {
        Self {
            store,
            locks: StreamLocks::new(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs `command` for `caller` exactly once per idempotency key.
    ///
    /// `render` turns the decision into the response stored with the key;
    /// a replay returns the stored bytes, whatever `render` would say now.
    /// A rejection is remembered under the key too, with no events.
    ///
    /// # Errors
    /// [`ExecuteError::KeyReused`] for a key stored with another request;
    /// [`ExecuteError::Conflict`] after [`COMMAND_ATTEMPTS_MAX`] conflicts;
    /// the store's errors. Nothing is written in any of these cases.
    pub async fn execute(
        &self,
        caller: Caller,
        command: &Command,
        now: Timestamp,
        idempotency: Option<Idempotency>,
        render: impl Fn(&Decision) -> Vec<u8>,
    ) -> Result<Executed, ExecuteError> {
        // No lookup of the key before deciding: the append checks it
        // atomically, before versions, and hands back the stored record, so
        // a replay costs a decision but a first request (the common case)
        // costs no extra read.
        let tenant_id = caller.tenant_id;
        // Streams to read from the store beyond their heads: those that
        // conflicted, and those a rejection was decided on unread.
        let mut read: Vec<StreamId> = Vec::new();
        for attempt_number in 0..COMMAND_ATTEMPTS_MAX {
            let mut attempt = Attempt::new(tenant_id);
            let mut touches = attempt.aggregates.touches(command);
            let mut guards = self.locks.acquire(tenant_id, &touches).await;
            for round in 0.. {
                self.load(&mut attempt, &touches, &read).await?;
                let now_touches = attempt.aggregates.touches(command);
                if now_touches == touches || round + 1 == LOAD_ROUNDS_MAX {
                    break;
                }
                // A payment or refund learnt its order's streams: lock them
                // all, in order, and load again under the locks.
                drop(guards);
                touches = now_touches;
                guards = self.locks.acquire(tenant_id, &touches).await;
                attempt = Attempt::new(tenant_id);
            }
            let (decision, sealed) = decide_and_seal(&attempt.aggregates, caller, command, now);
            if let Decision::Rejected(_) = decision {
                let assumed = attempt.assumed();
                if !assumed.is_empty() {
                    // Decided on streams taken as empty: read them first.
                    read.extend(assumed);
                    continue;
                }
            }
            let response = render(&decision);
            let request = AppendRequest {
                tenant_id,
                heads: heads_to_write(&attempt, &sealed)?,
                streams: appends(&attempt, sealed),
                idempotency: idempotency.as_ref().map(|i| IdempotencyWrite {
                    key: i.key.clone(),
                    request_hash: i.request_hash,
                    response: response.clone(),
                }),
            };
            if request.streams.is_empty()
                && request.heads.is_empty()
                && request.idempotency.is_none()
            {
                // Nothing to write and nothing to remember.
                return Ok(Executed {
                    response,
                    decision: Some(decision),
                });
            }
            let appended = self.store.append(request).await;
            drop(guards);
            match appended {
                Ok(_) => {
                    return Ok(Executed {
                        response,
                        decision: Some(decision),
                    });
                }
                Err(
                    AppendError::VersionConflict { stream, .. }
                    | AppendError::HeadConflict { stream, .. },
                ) => {
                    tracing::debug!(%stream, "conflict; loading the command's streams again");
                    read.push(stream);
                    tokio::time::sleep(conflict_pause(attempt_number)).await;
                }
                Err(AppendError::KeyExists(record)) => {
                    let idem = idempotency.as_ref().expect("only keyed appends store keys");
                    return replay(*record, idem);
                }
                Err(AppendError::Invalid(why)) => {
                    panic!("the command handler built an invalid append: {why}")
                }
                Err(AppendError::Store(e)) => return Err(e.into()),
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// The decision state of `streams` as stored now, for a query that
    /// needs it (a tenant's settings, an order's vendor).
    ///
    /// # Errors
    /// The store's, or a stored event that does not decode.
    pub async fn aggregates(
        &self,
        tenant_id: TenantId,
        streams: &[StreamId],
    ) -> Result<Aggregates, ExecuteError> {
        let mut attempt = Attempt::new(tenant_id);
        let touches = Touches {
            writes: Vec::new(),
            reads: streams.to_vec(),
        };
        self.load(&mut attempt, &touches, &[]).await?;
        Ok(attempt.aggregates)
    }

    /// Loads the heads of the streams `touches` names that `attempt` lacks,
    /// in one round trip, reading a stream beyond its head where it must
    /// be: it is in `read`, its head is unreadable, or it has no head and
    /// the command only reads it.
    async fn load(
        &self,
        attempt: &mut Attempt,
        touches: &Touches,
        read: &[StreamId],
    ) -> Result<(), ExecuteError> {
        let tenant_id = attempt.aggregates.tenant_id();
        let mut wanted: Vec<StreamId> = Vec::new();
        for &stream in touches.writes.iter().chain(&touches.reads) {
            if attempt.get(stream).is_none() && !wanted.contains(&stream) {
                wanted.push(stream);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let stored = self.store.load_heads(tenant_id, &wanted).await?;
        for (stream, stored) in wanted.into_iter().zip(stored) {
            let written = touches.writes.contains(&stream);
            let loaded = self
                .load_one(tenant_id, stream, stored, written, read.contains(&stream))
                .await?;
            attempt.aggregates.restore(loaded.head.clone());
            attempt.streams.push(loaded);
        }
        Ok(())
    }

    async fn load_one(
        &self,
        tenant_id: TenantId,
        stream: StreamId,
        stored: Option<StoredHead>,
        written: bool,
        must_read: bool,
    ) -> Result<Loaded, ExecuteError> {
        let etag = stored.as_ref().map_or(0, |s| s.etag);
        let decoded = stored.as_ref().and_then(|s| {
            StreamHead::from_bytes(&s.bytes)
                .inspect_err(|e| tracing::warn!(%stream, error = %e, "rebuilding a stream head"))
                .ok()
                .filter(|h| h.stream == stream && h.version == s.version)
        });
        let unreadable = stored.is_some() && decoded.is_none();
        let mut head = decoded.unwrap_or_else(|| StreamHead::empty(stream));
        let read = must_read || unreadable || (stored.is_none() && !written);
        let mut moved = false;
        if read {
            let records =
                ledger_store::read_stream_all(&self.store, tenant_id, stream, head.version).await?;
            for record in &records {
                head.evolve(&decode(&record.bytes)?)
                    .map_err(|e| ExecuteError::Corrupt(e.to_string()))?;
            }
            moved = !records.is_empty();
            if moved && stored.is_none() && stream.kind() == StreamKind::Tenant {
                // Whether an amount was ever recorded is a fact of the whole
                // tenant, which its stream alone does not hold: a tenant
                // head rebuilt without one assumes it was, so that a
                // currency change is refused rather than wrongly allowed.
                head.mark_amounts_recorded();
            }
        }
        Ok(Loaded {
            head,
            etag,
            assumed: !read && stored.is_none(),
            repaired: unreadable || moved,
        })
    }
    /// The stored answer for `idempotency`'s key, if the key was used.
    ///
    /// # Errors
    /// [`ExecuteError::KeyReused`] when it was used with another request.
    pub async fn replay(
        &self,
        caller: Caller,
        idempotency: &Idempotency,
    ) -> Result<Option<Executed>, ExecuteError> {
        match self
            .store
            .idempotency(caller.tenant_id, &idempotency.key)
            .await?
        {
            Some(record) => replay(record, idempotency).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `response` under the key with no events: the answer to a
    /// request that ran as several commands (each idempotent on its own).
    /// If the key was stored meanwhile, that answer wins.
    ///
    /// # Errors
    /// As [`CommandService::execute`].
    pub async fn remember(
        &self,
        caller: Caller,
        idempotency: Idempotency,
        response: Vec<u8>,
    ) -> Result<Executed, ExecuteError> {
        let request = AppendRequest {
            heads: Vec::new(),
            tenant_id: caller.tenant_id,
            streams: Vec::new(),
            idempotency: Some(IdempotencyWrite {
                key: idempotency.key.clone(),
                request_hash: idempotency.request_hash,
                response: response.clone(),
            }),
        };
        match self.store.append(request).await {
            Ok(_) => Ok(Executed {
                response,
                decision: Some(Decision::Accepted(Vec::new())),
            }),
            Err(AppendError::KeyExists(record)) => replay(*record, &idempotency),
            Err(AppendError::Store(e)) => Err(e.into()),
            Err(e) => panic!("an idempotency-only append failed: {e}"),
        }
    }
}

fn decide_and_seal(
    state: &Aggregates,
    caller: Caller,
    command: &Command,
    now: Timestamp,
) -> (Decision, Vec<Sealed>) {
    let sealed = state.decide(command).and_then(|decided| {
        let context = SealContext {
            command_id: CommandId::from_u128(uuid::Uuid::new_v4().as_u128()),
            actor: caller.actor,
            now,
        };
        state.seal(decided, command.occurred_at(now), context, || {
            EventId::from_u128(uuid::Uuid::new_v4().as_u128())
        })
    });
    match sealed {
        Err(rejection) => (Decision::Rejected(rejection), Vec::new()),
        Ok(sealed) => {
            let envelopes = sealed.iter().map(|s| s.envelope.clone()).collect();
            (Decision::Accepted(envelopes), sealed)
        }
    }
}

/// One stream append per sealed event (a decision writes each stream once),
/// at the version its head was loaded at.
fn appends(attempt: &Attempt, sealed: Vec<Sealed>) -> Vec<StreamAppend> {
    sealed
        .into_iter()
        .map(|s| StreamAppend {
            stream: s.envelope.stream(),
            expected: attempt
                .get(s.envelope.stream())
                .map_or_else(Default::default, |l| l.head.version),
            events: vec![s],
        })
        .collect()
}

/// The heads an append writes: each stream it appends to, moved by its
/// event (but an order it creates: see the module notes); the tenant's,
/// when the command records the tenant's first amount; and every head
/// rebuilt from its stream.
fn heads_to_write(attempt: &Attempt, sealed: &[Sealed]) -> Result<Vec<HeadWrite>, ExecuteError> {
    let mut heads = Vec::new();
    for s in sealed {
        let stream = s.envelope.stream();
        let loaded = attempt
            .get(stream)
            .ok_or_else(|| ExecuteError::Corrupt(format!("{stream} was decided unloaded")))?;
        if stream.kind() == StreamKind::Order && loaded.head.version.get() == 0 {
            continue;
        }
        let mut head = loaded.head.clone();
        head.evolve(&s.envelope)
            .map_err(|e| ExecuteError::Corrupt(e.to_string()))?;
        heads.push(head_write(head, loaded.etag));
    }
    let records_amount = sealed.iter().any(|s| s.envelope.event.currency().is_some());
    for loaded in &attempt.streams {
        let stream = loaded.head.stream;
        if heads.iter().any(|h: &HeadWrite| h.stream == stream) {
            continue;
        }
        let mut head = loaded.head.clone();
        let flips = stream.kind() == StreamKind::Tenant
            && records_amount
            && !attempt.aggregates.amounts_recorded();
        if flips {
            head.mark_amounts_recorded();
        }
        if flips || loaded.repaired {
            heads.push(head_write(head, loaded.etag));
        }
    }
    Ok(heads)
}

fn head_write(head: StreamHead, expected_etag: u64) -> HeadWrite {
    HeadWrite {
        stream: head.stream,
        expected_etag,
        version: head.version,
        bytes: head.to_bytes(),
    }
}

fn replay(record: IdempotencyRecord, idem: &Idempotency) -> Result<Executed, ExecuteError> {
    if record.request_hash != idem.request_hash {
        return Err(ExecuteError::KeyReused);
    }
    Ok(Executed {
        response: record.response,
        decision: None,
    })
}

fn decode(bytes: &[u8]) -> Result<Envelope, ExecuteError> {
    codec::decode(bytes).map_err(|e| ExecuteError::Corrupt(e.to_string()))
}

/// Striped reader-writer locks over (tenant, stream).
struct StreamLocks {
    stripes: Box<[RwLock<()>]>,
}

enum StreamGuard<'a> {
    Shared(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

impl StreamLocks {
    fn new() -> Self {
        Self {
            stripes: (0..LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }

    fn stripe(tenant_id: TenantId, stream: StreamId) -> usize {
        let mut h = FxHasher::default();
        tenant_id.hash(&mut h);
        stream.hash(&mut h);
        (h.finish() as usize) % LOCK_STRIPES
    }

    /// Locks every stripe `touches` needs, in stripe order so that two
    /// commands can never wait on each other in a cycle.
    async fn acquire(&self, tenant_id: TenantId, touches: &Touches) -> Vec<StreamGuard<'_>> {
        let mut wanted: Vec<(usize, bool)> = touches
            .writes
            .iter()
            .map(|s| (Self::stripe(tenant_id, *s), true))
            .chain(
                touches
                    .reads
                    .iter()
                    .map(|s| (Self::stripe(tenant_id, *s), false)),
            )
            .collect();
        // Exclusive sorts after shared for one stripe; keep the last of each.
        wanted.sort_unstable();
        wanted.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 |= later.1;
                true
            } else {
                false
            }
        });
        let mut guards = Vec::with_capacity(wanted.len());
        for (stripe, exclusive) in wanted {
            let lock = &self.stripes[stripe];
            guards.push(if exclusive {
                StreamGuard::Exclusive(lock.write().await)
            } else {
                StreamGuard::Shared(lock.read().await)
            });
        }
        guards
    }
}

/// A pause drawn at random below `CONFLICT_PAUSE_FIRST << conflicts`,
/// capped at [`CONFLICT_PAUSE_MAX`]. Without a random source it pauses for
/// the whole bound (a pause, if not a spread one).
fn conflict_pause(conflicts: usize) -> std::time::Duration {
    let bound = CONFLICT_PAUSE_FIRST
        .saturating_mul(1 << conflicts.min(16))
        .min(CONFLICT_PAUSE_MAX);
    let mut bytes = [0u8; 4];
    let fraction = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    bound.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_pauses_stay_below_a_bound_that_doubles_up_to_its_cap() {
        for conflicts in 0..COMMAND_ATTEMPTS_MAX + 20 {
            let bound = (CONFLICT_PAUSE_FIRST * (1 << conflicts.min(16))).min(CONFLICT_PAUSE_MAX);
            for _ in 0..50 {
                assert!(conflict_pause(conflicts) <= bound, "conflict {conflicts}");
            }
        }
        let draws: std::collections::HashSet<_> = (0..50).map(|_| conflict_pause(3)).collect();
        assert!(draws.len() > 1, "pauses are spread, not in lockstep");
    }
}
