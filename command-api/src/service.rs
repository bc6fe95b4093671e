//! The command handler: load, decide, seal, append, remember.
//!
//! One instance serves every tenant over any [`EventStore`]. For each
//! command it finds the streams the command writes and reads
//! ([`Aggregates::touches`]), locks them (writes exclusively, reads shared),
//! decides with ledger-core on the folded state, seals the events onto the
//! streams' heads, and appends them with their expected versions together
//! with the idempotency record, all in one atomic append.
//!
//! The folded state of each tenant is cached in memory and advanced by this
//! handler's own appends. The cache is never trusted blindly: every append
//! carries the versions the decision was made against, so a stale cache can
//! only cost a [`AppendError::VersionConflict`], after which the stream is
//! re-read from the store and the command decided again, a bounded number
//! of times. The locks make conflicts between this process's own commands
//! impossible, so concurrent checkouts on one employee queue instead of
//! failing, and the credit balance checked by `decide` is the one the
//! append extends: credit can never be overdrawn.

use std::sync::{Arc, Mutex};

use ledger_core::codec::{self, Sealed};
use ledger_core::envelope::{Actor, Envelope};
use ledger_core::id::{CommandId, EventId, StreamId, TenantId};
use ledger_core::memory::{Aggregates, Command, SealContext, Touches};
use ledger_core::rejection::Rejection;
use ledger_core::time::Timestamp;
use ledger_store::{
    AppendError, AppendRequest, EventStore, IdempotencyKey, IdempotencyRecord, IdempotencyWrite,
    Position, READ_PAGE_RECORDS_MAX, StoreError, StreamAppend,
};
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash as _, Hasher as _};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Most times one command is decided again after a version conflict.
pub const COMMAND_ATTEMPTS_MAX: usize = 4;
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
    /// The log position a reader must reach to see the command's effects.
    pub position: Position,
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
    tenants: Mutex<FxHashMap<TenantId, Arc<Mutex<Aggregates>>>>,
    locks: StreamLocks,
}

impl<S: EventStore> CommandService<S> {
    /// Folds the whole log into the per-tenant state, then serves commands.
    ///
    /// # Errors
    /// The store's, or a record that does not decode.
    pub async fn open(store: S) -> Result<Self, ExecuteError> {
        let mut tenants: FxHashMap<TenantId, Aggregates> = FxHashMap::default();
        let mut after = Position::ZERO;
        loop {
            let page = store.read_log(after, READ_PAGE_RECORDS_MAX).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            for record in &page {
                let envelope = decode(&record.bytes)?;
                tenants
                    .entry(envelope.tenant_id())
                    .or_insert_with(|| Aggregates::new(envelope.tenant_id()))
                    .evolve(&envelope);
            }
        }
        let tenants = tenants
            .into_iter()
            .map(|(id, a)| (id, Arc::new(Mutex::new(a))))
            .collect();
        Ok(Self {
            store,
            tenants: Mutex::new(tenants),
            locks: StreamLocks::new(),
        })
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
        let aggregates = self.aggregates(caller.tenant_id);
        for _ in 0..COMMAND_ATTEMPTS_MAX {
            let touches = lock(&aggregates).touches(command);
            let _guards = self.locks.acquire(caller.tenant_id, &touches).await;
            if lock(&aggregates).touches(command) != touches {
                // A payment or refund raced the sale that creates its order.
                continue;
            }
            let (decision, streams) = decide_and_seal(&aggregates, caller, command, now);
            let response = render(&decision);
            if streams.is_empty() && idempotency.is_none() {
                // Nothing to write and nothing to remember.
                return Ok(Executed {
                    response,
                    position: self.store.head(),
                    decision: Some(decision),
                });
            }
            let decided = Decided {
                touches,
                decision,
                streams,
                response,
            };
            let appended = self.append(&aggregates, caller, decided, idempotency.as_ref());
            if let Some(executed) = appended.await? {
                return Ok(executed);
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// Appends a decision (with the idempotency record) and folds it into
    /// the cache: `None` when a stream moved underneath it, which is then
    /// re-read for the command to be decided again.
    async fn append(
        &self,
        aggregates: &Mutex<Aggregates>,
        caller: Caller,
        decided: Decided,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<Executed>, ExecuteError> {
        let Decided {
            touches,
            decision,
            streams,
            response,
        } = decided;
        let request = AppendRequest {
            tenant_id: caller.tenant_id,
            streams,
            idempotency: idempotency.map(|i| IdempotencyWrite {
                key: i.key.clone(),
                request_hash: i.request_hash,
                response: response.clone(),
            }),
        };
        match self.store.append(request).await {
            Ok(committed) => {
                if let Decision::Accepted(envelopes) = &decision {
                    let mut state = lock(aggregates);
                    envelopes.iter().for_each(|e| state.evolve(e));
                }
                Ok(Some(Executed {
                    response,
                    position: committed.position,
                    decision: Some(decision),
                }))
            }
            Err(AppendError::VersionConflict { stream, .. }) => {
                tracing::debug!(%stream, "version conflict; re-reading the stream");
                self.refresh(aggregates, caller.tenant_id, stream).await?;
                Ok(None)
            }
            Err(AppendError::KeyExists(record)) => {
                let idem = idempotency.expect("only keyed appends store keys");
                replay(*record, idem).map(Some)
            }
            Err(AppendError::Invalid(why)) => {
                panic!("the command handler built an invalid append: {why}")
            }
            Err(AppendError::Store(e)) => {
                // The append may have landed after all; re-read what
                // this command wrote so the cache cannot go stale.
                for stream in touches.writes {
                    self.refresh(aggregates, caller.tenant_id, stream).await?;
                }
                Err(e.into())
            }
        }
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
            tenant_id: caller.tenant_id,
            streams: Vec::new(),
            idempotency: Some(IdempotencyWrite {
                key: idempotency.key.clone(),
                request_hash: idempotency.request_hash,
                response: response.clone(),
            }),
        };
        match self.store.append(request).await {
            Ok(committed) => Ok(Executed {
                response,
                position: committed.position,
                decision: Some(Decision::Accepted(Vec::new())),
            }),
            Err(AppendError::KeyExists(record)) => replay(*record, &idempotency),
            Err(AppendError::Store(e)) => Err(e.into()),
            Err(e) => panic!("an idempotency-only append failed: {e}"),
        }
    }

    /// A read of the command side's state, e.g. to route a query.
    pub fn with_aggregates<T>(
        &self,
        tenant_id: TenantId,
        read: impl FnOnce(&Aggregates) -> T,
    ) -> T {
        read(&lock(&self.aggregates(tenant_id)))
    }

    fn aggregates(&self, tenant_id: TenantId) -> Arc<Mutex<Aggregates>> {
        let mut tenants = self.tenants.lock().expect("tenant map lock poisoned");
        tenants
            .entry(tenant_id)
            .or_insert_with(|| Arc::new(Mutex::new(Aggregates::new(tenant_id))))
            .clone()
    }

    /// Folds in whatever the store holds of `stream` beyond the cached head.
    async fn refresh(
        &self,
        aggregates: &Mutex<Aggregates>,
        tenant_id: TenantId,
        stream: StreamId,
    ) -> Result<(), ExecuteError> {
        let after = lock(aggregates).head(stream).version;
        let records = ledger_store::read_stream_all(&self.store, tenant_id, stream, after).await?;
        let envelopes = records
            .iter()
            .map(|r| decode(&r.bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = lock(aggregates);
        for envelope in envelopes {
            // Another refresh may have folded some of these in meanwhile.
            if envelope.version() > state.head(stream).version {
                state.evolve(&envelope);
            }
        }
        Ok(())
    }
}

/// One attempt's decision, sealed and rendered, with the streams it was
/// decided on.
struct Decided {
    touches: Touches,
    decision: Decision,
    streams: Vec<StreamAppend>,
    response: Vec<u8>,
}

fn decide_and_seal(
    aggregates: &Mutex<Aggregates>,
    caller: Caller,
    command: &Command,
    now: Timestamp,
) -> (Decision, Vec<StreamAppend>) {
    let state = lock(aggregates);
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
            let streams = sealed
                .iter()
                .map(|s| StreamAppend {
                    stream: s.envelope.stream(),
                    expected: state.head(s.envelope.stream()).version,
                    events: vec![s.clone()],
                })
                .collect();
            let envelopes = sealed.into_iter().map(|Sealed { envelope, .. }| envelope);
            (Decision::Accepted(envelopes.collect()), streams)
        }
    }
}

fn replay(record: IdempotencyRecord, idem: &Idempotency) -> Result<Executed, ExecuteError> {
    if record.request_hash != idem.request_hash {
        return Err(ExecuteError::KeyReused);
    }
    Ok(Executed {
        response: record.response,
        position: record.position,
        decision: None,
    })
}

fn decode(bytes: &[u8]) -> Result<Envelope, ExecuteError> {
    codec::decode(bytes).map_err(|e| ExecuteError::Corrupt(e.to_string()))
}

fn lock(aggregates: &Mutex<Aggregates>) -> std::sync::MutexGuard<'_, Aggregates> {
    aggregates.lock().expect("aggregates lock poisoned")
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
