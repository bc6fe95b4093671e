//! The activity log: every event, filtered by vendor or by actor, newest first.

use bincode::error::DecodeError;
use serde::Serialize;

use super::bytes::{Reader, Writer};
use super::gate::{Outcome, Sink, StreamGate};
use crate::envelope::{Actor, Envelope};
use crate::event::EventType;
use crate::id::{StreamId, StreamKind, StreamVersion, TenantId, UserId, VendorId};
use crate::money::Money;
use crate::time::Timestamp;

/// Most entries one page may hold.
pub const PAGE_ACTIVITY_MAX: usize = 500;

/// One event as the activity log shows it. Keyed by `(tenant_id, stream, version)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityEntry {
    pub tenant_id: TenantId,
    pub stream: StreamId,
    pub version: StreamVersion,
    pub event_type: EventType,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub actor: Actor,
    pub vendor_id: Option<VendorId>,
    pub amount: Option<Money>,
}

impl ActivityEntry {
    /// The entry of one event: a function of the event alone.
    pub fn of(envelope: &Envelope) -> ActivityEntry {
        let h = &envelope.header;
        let vendor_id = match h.stream.kind() {
            StreamKind::Vendor => Some(VendorId::from_text(h.stream.id())),
            _ => envelope.event.vendor_id(),
        };
        ActivityEntry {
            tenant_id: h.tenant_id,
            stream: h.stream,
            version: h.version,
            event_type: envelope.event.event_type(),
            occurred_at: h.occurred_at,
            recorded_at: h.recorded_at,
            actor: h.actor,
            vendor_id,
            amount: envelope.event.amount(),
        }
    }

    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        // Destructured so that a field added to entries cannot be left out.
        let ActivityEntry {
            tenant_id,
            stream,
            version,
            event_type,
            occurred_at,
            recorded_at,
            actor,
            vendor_id,
            amount,
        } = self;
        w.tenant(*tenant_id);
        w.put(stream);
        w.put(version);
        // The stored tag, which is forever.
        w.put(&event_type.tag());
        w.put(occurred_at);
        w.put(recorded_at);
        w.put(actor);
        w.put(vendor_id);
        w.put(amount);
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ActivityEntry {
            tenant_id: r.tenant()?,
            stream: r.get()?,
            version: r.get()?,
            event_type: EventType::from_tag(r.get()?)
                .ok_or(DecodeError::Other("unknown event type"))?,
            occurred_at: r.get()?,
            recorded_at: r.get()?,
            actor: r.get()?,
            vendor_id: r.get()?,
            amount: r.get()?,
        })
    }

    /// The log's order: by record time, ties broken by stream and version.
    pub fn sort_key(&self) -> (Timestamp, StreamId, StreamVersion) {
        (self.recorded_at, self.stream, self.version)
    }
}

/// Which entries a query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityFilter {
    Vendor(VendorId),
    Actor(UserId),
    All,
}

impl ActivityFilter {
    pub fn matches(&self, entry: &ActivityEntry) -> bool {
        match *self {
            ActivityFilter::Vendor(v) => entry.vendor_id == Some(v),
            ActivityFilter::Actor(u) => entry.actor.user_id == u,
            ActivityFilter::All => true,
        }
    }
}

/// A page of a tenant's activity: entries matching `filter`, newest first
/// by [`ActivityEntry::sort_key`], strictly before `cursor` when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityQuery {
    pub tenant_id: TenantId,
    pub filter: ActivityFilter,
    pub cursor: Option<(Timestamp, StreamId, StreamVersion)>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ActivityLog {
    gate: StreamGate,
    /// In arrival order; queries sort. Arrival order differs between
    /// deliveries, so equality compares the entries as a set.
    entries: Vec<ActivityEntry>,
}

impl PartialEq for ActivityLog {
    fn eq(&self, other: &Self) -> bool {
        fn sorted(log: &ActivityLog) -> Vec<&ActivityEntry> {
            let mut refs: Vec<&ActivityEntry> = log.entries.iter().collect();
            refs.sort_by_key(|e| (e.tenant_id, e.sort_key()));
            refs
        }
        self.gate == other.gate && sorted(self) == sorted(other)
    }
}

impl Eq for ActivityLog {}

impl ActivityLog {
    pub fn apply(&mut self, envelope: &Envelope) -> Outcome {
        self.apply_into(envelope, &mut super::gate::Discard)
    }

    pub fn apply_into(
        &mut self,
        envelope: &Envelope,
        sink: &mut impl Sink<ActivityEntry>,
    ) -> Outcome {
        let outcome = self.gate.admit(envelope);
        if outcome == Outcome::Applied {
            let entry = ActivityEntry::of(envelope);
            sink.emit(|| entry.clone());
            self.entries.push(entry);
        }
        outcome
    }

    /// A page of a tenant's entries matching `filter`, newest first, strictly
    /// before `cursor` (the sort key of the previous page's last entry).
    pub fn query(
        &self,
        tenant_id: TenantId,
        filter: ActivityFilter,
        cursor: Option<(Timestamp, StreamId, StreamVersion)>,
        limit: usize,
    ) -> Vec<&ActivityEntry> {
        let mut page: Vec<&ActivityEntry> = self
            .entries
            .iter()
            .filter(|e| {
                e.tenant_id == tenant_id
                    && filter.matches(e)
                    && cursor.is_none_or(|c| e.sort_key() < c)
            })
            .collect();
        page.sort_unstable_by_key(|e| std::cmp::Reverse(e.sort_key()));
        page.truncate(limit.min(PAGE_ACTIVITY_MAX));
        page
    }

    /// The gate, then the entries in arrival order, so a restored log is the
    /// same list and not only the same set.
    pub(super) fn write_snapshot(&self, w: &mut Writer) {
        let Self { gate, entries } = self;
        gate.write_snapshot(w);
        w.seq(entries, |w, entry| entry.write_snapshot(w));
    }

    pub(super) fn read_snapshot(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            gate: StreamGate::read_snapshot(r)?,
            entries: r.seq(usize::MAX, ActivityEntry::read_snapshot)?,
        })
    }

    /// Every entry, in arrival order.
    pub fn entries(&self) -> impl Iterator<Item = &ActivityEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
