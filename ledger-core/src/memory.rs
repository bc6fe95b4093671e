//! An in-memory ledger: the reference command handler over an in-memory log.
//!
//! It shows, with no store in the way, what every command handler does: find
//! the streams a command reads, fold them into the decider's state, decide,
//! then seal the events onto each stream at its next version and append them
//! all at once. It is the oracle of the property tests and the engine of the
//! log simulator. It is still pure: ids, time and the caller come in as
//! arguments.

use rustc_hash::FxHashMap;

use crate::codec::{self, Sealed};
use crate::credit::{Credit, CreditCommand, CreditContext, CreditState};
use crate::decider::Decider;
use crate::envelope::{Actor, Envelope, Hash, Header};
use crate::event::{Event, Payment};
use crate::head::{HeadState, StreamHead};
use crate::id::{
    CommandId, EmployeeId, EventId, OrderId, StreamId, StreamKind, StreamVersion, TenantId,
    VendorId,
};
use crate::rejection::Rejection;
use crate::sale::{OrderState, Sale, SaleCommand, SaleContext};
use crate::tenant::{ConfigureTenant, Tenant, TenantContext, TenantState};
use crate::time::Timestamp;
use crate::vendor::{Vendor, VendorCommand, VendorState};

/// Any command, routed to the decider that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Tenant(ConfigureTenant),
    Vendor(VendorCommand),
    Credit(CreditCommand),
    Sale(SaleCommand),
}

impl Command {
    /// When the command's facts happened: the sale's business time, or `now`.
    pub fn occurred_at(&self, now: Timestamp) -> Timestamp {
        match self {
            Command::Sale(SaleCommand::Record(c)) => c.occurred_at(),
            _ => now,
        }
    }
}

/// A stream's head: the version and hash the next event links to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    pub version: StreamVersion,
    pub hash: Hash,
}

/// The streams a command may write (locked exclusively by a concurrent
/// handler) and those it only reads (locked shared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touches {
    pub writes: Vec<StreamId>,
    pub reads: Vec<StreamId>,
}

/// Who sealed a decision, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext {
    pub command_id: CommandId,
    pub actor: Actor,
    pub now: Timestamp,
}

/// One tenant's aggregates, folded: the state every command decides on.
///
/// This is the one place that knows which streams a command reads and
/// writes, and which stream each decided event goes to. [`MemoryLedger`]
/// and the service's command handler both decide through it.
#[derive(Debug, Clone)]
pub struct Aggregates {
    tenant_id: TenantId,
    heads: FxHashMap<StreamId, Head>,
    tenant: TenantState,
    vendors: FxHashMap<VendorId, VendorState>,
    credit: FxHashMap<EmployeeId, CreditState>,
    orders: FxHashMap<OrderId, OrderState>,
    amounts_recorded: bool,
}

impl Aggregates {
    pub fn new(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            heads: FxHashMap::default(),
            tenant: None,
            vendors: FxHashMap::default(),
            credit: FxHashMap::default(),
            orders: FxHashMap::default(),
            amounts_recorded: false,
        }
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    pub fn settings(&self) -> TenantState {
        self.tenant
    }

    pub fn head(&self, stream: StreamId) -> Head {
        self.heads.get(&stream).copied().unwrap_or_default()
    }

    pub fn vendor_state(&self, vendor_id: VendorId) -> Option<&crate::vendor::RegisteredVendor> {
        self.vendors.get(&vendor_id).and_then(Option::as_ref)
    }

    pub fn credit_state(&self, employee_id: EmployeeId) -> Option<&crate::credit::CreditAccount> {
        self.credit.get(&employee_id).and_then(Option::as_ref)
    }

    pub fn order_state(&self, order_id: OrderId) -> Option<&crate::sale::Order> {
        self.orders.get(&order_id).and_then(Option::as_ref)
    }

    /// Every enrolled employee, in id order.
    pub fn employees(&self) -> Vec<EmployeeId> {
        let mut ids: Vec<EmployeeId> = self
            .credit
            .iter()
            .filter_map(|(id, account)| account.as_ref().map(|_| *id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The streams `command` may write and read, given the current state.
    /// For a payment or refund the credit stream comes from the order, so a
    /// concurrent handler must check the answer again once it holds locks.
    pub fn touches(&self, command: &Command) -> Touches {
        let tenant = StreamId::tenant(self.tenant_id);
        match command {
            Command::Tenant(_) => Touches {
                writes: vec![tenant],
                reads: vec![],
            },
            Command::Vendor(c) => Touches {
                writes: vec![StreamId::vendor(vendor_of(c))],
                reads: vec![tenant],
            },
            Command::Credit(c) => Touches {
                writes: vec![StreamId::credit(employee_of(c))],
                reads: vec![tenant],
            },
            Command::Sale(c) => {
                let (vendor, employee) = self.sale_streams(c);
                let mut writes = vec![StreamId::order(c.order_id())];
                writes.extend(employee.map(StreamId::credit));
                let mut reads = vec![tenant];
                reads.extend(vendor.map(StreamId::vendor));
                Touches { writes, reads }
            }
        }
    }

    /// Decides `command`: its events, each with the stream it goes to.
    ///
    /// # Errors
    /// The decider's [`Rejection`].
    pub fn decide(&self, command: &Command) -> Result<Vec<(StreamId, Event)>, Rejection> {
        let events = match command {
            Command::Tenant(c) => Tenant::decide(
                c,
                &TenantContext {
                    settings: self.tenant,
                    amounts_recorded: self.amounts_recorded,
                },
            ),
            Command::Vendor(c) => {
                Vendor::decide(c, &self.vendors.get(&vendor_of(c)).cloned().flatten())
            }
            Command::Credit(c) => {
                let account = self.credit.get(&employee_of(c)).cloned().flatten();
                Credit::decide(
                    c,
                    &CreditContext {
                        tenant: self.tenant,
                        account,
                    },
                )
            }
            Command::Sale(c) => Sale::decide(c, &self.sale_context(c)),
        }?;
        Ok(events
            .into_iter()
            .map(|event| (self.stream_of(command, &event), event))
            .collect())
    }

    /// Seals decided events onto their streams' heads, in order. Within one
    /// decision each event goes to a distinct stream, so the heads are
    /// those of the current state.
    ///
    /// # Errors
    /// [`Rejection::LimitExceeded`] when an event encodes beyond
    /// [`crate::limits::EVENT_BYTES_MAX`].
    pub fn seal(
        &self,
        decided: Vec<(StreamId, Event)>,
        occurred_at: Timestamp,
        context: SealContext,
        mut event_id: impl FnMut() -> EventId,
    ) -> Result<Vec<Sealed>, Rejection> {
        let mut sealed = Vec::with_capacity(decided.len());
        for (stream, event) in decided {
            debug_assert!(
                sealed
                    .iter()
                    .all(|s: &Sealed| s.envelope.stream() != stream)
            );
            let head = self.head(stream);
            let header = Header {
                event_id: event_id(),
                tenant_id: self.tenant_id,
                stream,
                version: head.version.next(),
                occurred_at,
                recorded_at: context.now,
                command_id: context.command_id,
                actor: context.actor,
            };
            let s =
                codec::seal(header, event, head.hash).map_err(|_| Rejection::LimitExceeded {
                    field: "event",
                    what: "encoded size",
                    max: crate::limits::EVENT_BYTES_MAX as i64,
                })?;
            sealed.push(s);
        }
        Ok(sealed)
    }

    /// Folds one stored event of this tenant in. Events of a stream must
    /// come in version order.
    pub fn evolve(&mut self, envelope: &Envelope) {
        assert_eq!(
            envelope.tenant_id(),
            self.tenant_id,
            "an event of another tenant"
        );
        let stream = envelope.stream();
        let head = self.heads.entry(stream).or_default();
        assert_eq!(
            envelope.version(),
            head.version.next(),
            "{stream} evolved out of order"
        );
        *head = Head {
            version: envelope.version(),
            hash: envelope.hash,
        };
        let mut state = self.take_state(stream);
        state.evolve(&envelope.event);
        self.put_state(stream, state);
        self.amounts_recorded |= envelope.event.currency().is_some();
    }

    /// Whether any event of the tenant folded (or restored) so far records
    /// an amount: what locks the tenant's currency.
    pub fn amounts_recorded(&self) -> bool {
        self.amounts_recorded
    }

    /// `stream`'s head as folded so far: its state, version and hash. The
    /// tenant stream's head carries [`Aggregates::amounts_recorded`].
    ///
    /// # Panics
    /// For the tenant stream of another tenant.
    pub fn stream_head(&self, stream: StreamId) -> StreamHead {
        self.assert_own(stream);
        let id = stream.id();
        let state = match stream.kind() {
            StreamKind::Tenant => HeadState::Tenant(TenantContext {
                settings: self.tenant,
                amounts_recorded: self.amounts_recorded,
            }),
            StreamKind::Vendor => HeadState::Vendor(
                self.vendors
                    .get(&VendorId::from_text(id))
                    .cloned()
                    .flatten(),
            ),
            StreamKind::Credit => HeadState::Credit(
                self.credit
                    .get(&EmployeeId::from_text(id))
                    .cloned()
                    .flatten(),
            ),
            StreamKind::Order => {
                HeadState::Order(self.orders.get(&OrderId::from_text(id)).cloned().flatten())
            }
        };
        let Head { version, hash } = self.head(stream);
        StreamHead {
            stream,
            version,
            hash,
            state,
        }
    }

    /// Installs a head: its stream's state, version and hash, as if the
    /// stream had been folded up to it. Restoring the tenant head also sets
    /// [`Aggregates::amounts_recorded`] from it. A fresh `Aggregates` with
    /// the heads of the streams a command touches restored decides and seals
    /// that command exactly as the fully folded one. For a payment or refund
    /// the credit stream comes from the order: restore the order head before
    /// asking [`Aggregates::touches`] for the rest.
    ///
    /// # Panics
    /// For a head whose state is not of its stream's kind, or the tenant
    /// head of another tenant.
    pub fn restore(&mut self, head: StreamHead) {
        assert_eq!(
            head.state.kind(),
            head.stream.kind(),
            "{} restored with another kind's state",
            head.stream
        );
        self.assert_own(head.stream);
        self.heads.insert(
            head.stream,
            Head {
                version: head.version,
                hash: head.hash,
            },
        );
        self.put_state(head.stream, head.state);
    }

    /// Takes `stream`'s state out of its map, to fold it and put it back.
    fn take_state(&mut self, stream: StreamId) -> HeadState {
        let id = stream.id();
        match stream.kind() {
            StreamKind::Tenant => HeadState::Tenant(TenantContext {
                settings: self.tenant,
                amounts_recorded: self.amounts_recorded,
            }),
            StreamKind::Vendor => {
                HeadState::Vendor(self.vendors.remove(&VendorId::from_text(id)).flatten())
            }
            StreamKind::Credit => {
                HeadState::Credit(self.credit.remove(&EmployeeId::from_text(id)).flatten())
            }
            StreamKind::Order => {
                HeadState::Order(self.orders.remove(&OrderId::from_text(id)).flatten())
            }
        }
    }

    /// Puts `stream`'s state, of `stream`'s kind, in its place.
    fn put_state(&mut self, stream: StreamId, state: HeadState) {
        let id = stream.id();
        match state {
            HeadState::Tenant(t) => {
                self.tenant = t.settings;
                self.amounts_recorded = t.amounts_recorded;
            }
            HeadState::Vendor(v) => {
                self.vendors.insert(VendorId::from_text(id), v);
            }
            HeadState::Credit(c) => {
                self.credit.insert(EmployeeId::from_text(id), c);
            }
            HeadState::Order(o) => {
                self.orders.insert(OrderId::from_text(id), o);
            }
        }
    }

    fn assert_own(&self, stream: StreamId) {
        assert!(
            stream.kind() != StreamKind::Tenant || stream == StreamId::tenant(self.tenant_id),
            "{stream} is not the stream of tenant {}",
            self.tenant_id
        );
    }

    /// The vendor and credit account a sale command reads besides its order:
    /// those it names (a new sale), or those its order names (payment, refund).
    fn sale_streams(&self, c: &SaleCommand) -> (Option<VendorId>, Option<EmployeeId>) {
        if let SaleCommand::Record(r) = c {
            let employee = match r.payment {
                Payment::Credit { employee_id } => Some(employee_id),
                _ => None,
            };
            return (Some(r.vendor_id), employee);
        }
        match self.order_state(c.order_id()) {
            Some(o) => (Some(o.vendor_id), o.credit_employee()),
            None => (None, None),
        }
    }

    fn sale_context(&self, c: &SaleCommand) -> SaleContext {
        let (vendor_id, employee_id) = self.sale_streams(c);
        SaleContext {
            tenant: self.tenant,
            vendor: vendor_id.and_then(|v| self.vendors.get(&v).cloned().flatten()),
            order: self.orders.get(&c.order_id()).cloned().flatten(),
            credit: employee_id.and_then(|e| self.credit.get(&e).cloned().flatten()),
        }
    }

    fn stream_of(&self, command: &Command, event: &Event) -> StreamId {
        match (event.stream_kind(), command) {
            (StreamKind::Tenant, _) => StreamId::tenant(self.tenant_id),
            (StreamKind::Vendor, Command::Vendor(c)) => StreamId::vendor(vendor_of(c)),
            (StreamKind::Credit, Command::Credit(c)) => StreamId::credit(employee_of(c)),
            (StreamKind::Order, Command::Sale(c)) => StreamId::order(c.order_id()),
            (StreamKind::Credit, Command::Sale(c)) => {
                let (_, employee) = self.sale_streams(c);
                StreamId::credit(employee.expect("a sale's credit event names its employee"))
            }
            (kind, _) => unreachable!("a {kind:?} event from {command:?}"),
        }
    }
}

/// One tenant's log, in memory.
pub struct MemoryLedger {
    aggregates: Aggregates,
    records: Vec<Vec<u8>>,
    next_id: u128,
}

impl MemoryLedger {
    pub fn new(tenant_id: TenantId) -> Self {
        Self {
            aggregates: Aggregates::new(tenant_id),
            records: Vec::new(),
            next_id: 1,
        }
    }

    pub fn tenant_id(&self) -> TenantId {
        self.aggregates.tenant_id()
    }

    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// Every record, in commit order.
    pub fn records(&self) -> &[Vec<u8>] {
        &self.records
    }

    pub fn into_records(self) -> Vec<Vec<u8>> {
        self.records
    }

    pub fn credit_state(&self, employee_id: EmployeeId) -> Option<&crate::credit::CreditAccount> {
        self.aggregates.credit_state(employee_id)
    }

    pub fn order_state(&self, order_id: OrderId) -> Option<&crate::sale::Order> {
        self.aggregates.order_state(order_id)
    }

    /// Decides `command` and appends its events, all or nothing.
    ///
    /// # Errors
    /// The decider's [`Rejection`]; nothing is appended then.
    pub fn execute(
        &mut self,
        command: &Command,
        actor: Actor,
        now: Timestamp,
    ) -> Result<Vec<Envelope>, Rejection> {
        let decided = self.aggregates.decide(command)?;
        let context = SealContext {
            command_id: CommandId::from_u128(self.mint()),
            actor,
            now,
        };
        let mut next_id = self.next_id;
        let sealed = self
            .aggregates
            .seal(decided, command.occurred_at(now), context, || {
                next_id += 1;
                EventId::from_u128(next_id)
            })?;
        self.next_id = next_id;
        let mut out = Vec::with_capacity(sealed.len());
        for Sealed { envelope, bytes } in sealed {
            self.aggregates.evolve(&envelope);
            self.records.push(bytes);
            out.push(envelope);
        }
        Ok(out)
    }

    fn mint(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }
}

fn vendor_of(c: &VendorCommand) -> VendorId {
    match c {
        VendorCommand::Register(c) => c.vendor_id,
        VendorCommand::ChangeCommissionRate(c) => c.vendor_id,
        VendorCommand::Suspend(c) => c.vendor_id,
        VendorCommand::Reinstate(c) => c.vendor_id,
    }
}

fn employee_of(c: &CreditCommand) -> EmployeeId {
    match c {
        CreditCommand::Open(c) => c.employee_id,
        CreditCommand::ChangePolicy(c) => c.employee_id,
        CreditCommand::Suspend(c) => c.employee_id,
        CreditCommand::Reinstate(c) => c.employee_id,
        CreditCommand::Replenish(c) => c.employee_id,
        CreditCommand::Adjust(c) => c.employee_id,
    }
}
