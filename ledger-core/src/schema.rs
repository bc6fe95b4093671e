//! JSON Schemas of every event payload and every command, generated from the
//! types. `schemas/` in the repository holds them; a test fails when the
//! committed files and these drift apart.

use schemars::{JsonSchema, generate::SchemaSettings};

use crate::credit::{
    AdjustCredit, ChangeCreditPolicy, OpenCreditAccount, ReinstateCreditAccount, ReplenishCredit,
    SuspendCreditAccount,
};
use crate::envelope::Envelope;
use crate::event::{self, Event, EventType};
use crate::sale::{IssueRefund, ReceivePayment, RecordSale};
use crate::tenant::ConfigureTenant;
use crate::vendor::{ChangeCommissionRate, RegisterVendor, ReinstateVendor, SuspendVendor};

/// A generated schema and the path, relative to `schemas/`, it is committed at.
pub struct SchemaFile {
    pub path: String,
    pub json: String,
}

fn render<T: JsonSchema>(path: String) -> SchemaFile {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut json = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    json.push('\n');
    SchemaFile { path, json }
}

fn event<T: JsonSchema>(event_type: EventType) -> SchemaFile {
    render::<T>(format!(
        "events/{}.v{}.json",
        event_type.as_str(),
        event_type.schema_version()
    ))
}

fn command<T: JsonSchema>(name: &str) -> SchemaFile {
    render::<T>(format!("commands/{name}.json"))
}

/// Every schema, in a stable order.
pub fn all() -> Vec<SchemaFile> {
    use EventType as T;
    vec![
        render::<Event>("events/Event.json".into()),
        render::<EnvelopeSchema>("events/Envelope.json".into()),
        event::<event::TenantConfigured>(T::TenantConfigured),
        event::<event::VendorRegistered>(T::VendorRegistered),
        event::<event::CommissionRateChanged>(T::CommissionRateChanged),
        event::<event::VendorSuspended>(T::VendorSuspended),
        event::<event::VendorReinstated>(T::VendorReinstated),
        event::<event::CreditAccountOpened>(T::CreditAccountOpened),
        event::<event::CreditPolicyChanged>(T::CreditPolicyChanged),
        event::<event::CreditAccountSuspended>(T::CreditAccountSuspended),
        event::<event::CreditAccountReinstated>(T::CreditAccountReinstated),
        event::<event::CreditReplenished>(T::CreditReplenished),
        event::<event::CreditSpent>(T::CreditSpent),
        event::<event::CreditRefunded>(T::CreditRefunded),
        event::<event::CreditAdjusted>(T::CreditAdjusted),
        event::<event::SaleRecorded>(T::SaleRecorded),
        event::<event::PaymentReceived>(T::PaymentReceived),
        event::<event::RefundIssued>(T::RefundIssued),
        command::<ConfigureTenant>("ConfigureTenant"),
        command::<RegisterVendor>("RegisterVendor"),
        command::<ChangeCommissionRate>("ChangeCommissionRate"),
        command::<SuspendVendor>("SuspendVendor"),
        command::<ReinstateVendor>("ReinstateVendor"),
        command::<OpenCreditAccount>("OpenCreditAccount"),
        command::<ChangeCreditPolicy>("ChangeCreditPolicy"),
        command::<SuspendCreditAccount>("SuspendCreditAccount"),
        command::<ReinstateCreditAccount>("ReinstateCreditAccount"),
        command::<ReplenishCredit>("ReplenishCredit"),
        command::<AdjustCredit>("AdjustCredit"),
        command::<RecordSale>("RecordSale"),
        command::<ReceivePayment>("ReceivePayment"),
        command::<IssueRefund>("IssueRefund"),
    ]
}

/// The JSON export form of an [`Envelope`] (one line per event).
#[derive(JsonSchema)]
#[schemars(rename = "Envelope", deny_unknown_fields)]
#[allow(dead_code)]
struct EnvelopeSchema {
    event_id: crate::id::EventId,
    tenant_id: crate::id::TenantId,
    stream: crate::id::StreamId,
    version: crate::id::StreamVersion,
    occurred_at: crate::time::Timestamp,
    recorded_at: crate::time::Timestamp,
    command_id: crate::id::CommandId,
    actor: crate::envelope::Actor,
    prev_hash: crate::envelope::Hash,
    hash: crate::envelope::Hash,
    event: Event,
}

const _: fn(&Envelope) = |_| {};
