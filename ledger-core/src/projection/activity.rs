//! The activity log: every event, filtered by vendor or by actor, newest first.

use serde::Serialize;

use super::{Outcome, Sink, StreamGate};
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
        self.apply_into(envelope, &mut super::Discard)
    }

    pub fn apply_into(
        &mut self,
        envelope: &Envelope,
        sink: &mut impl Sink<ActivityEntry>,
    ) -> Outcome {
        let outcome = self.gate.admit(envelope);
        if outcome == Outcome::Applied {
            let h = &envelope.header;
            let vendor_id = match h.stream.kind() {
                StreamKind::Vendor => Some(VendorId::from_text(h.stream.id())),
                _ => envelope.event.vendor_id(),
            };
            let entry = ActivityEntry {
                tenant_id: h.tenant_id,
                stream: h.stream,
                version: h.version,
                event_type: envelope.event.event_type(),
                occurred_at: h.occurred_at,
                recorded_at: h.recorded_at,
                actor: h.actor,
                vendor_id,
                amount: envelope.event.amount(),
            };
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
                    && match filter {
                        ActivityFilter::Vendor(v) => e.vendor_id == Some(v),
                        ActivityFilter::Actor(u) => e.actor.user_id == u,
                        ActivityFilter::All => true,
                    }
                    && cursor.is_none_or(|c| e.sort_key() < c)
            })
            .collect();
        page.sort_unstable_by_key(|e| std::cmp::Reverse(e.sort_key()));
        page.truncate(limit.min(PAGE_ACTIVITY_MAX));
        page
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
