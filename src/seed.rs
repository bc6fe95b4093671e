//! Simulated tenants written into a store: the demo tenant `tally serve
//! --demo` starts with, and `tally seed`, which fills a store with as many
//! tenants as asked (to try the audit and replay tools, and to measure
//! them, on a log of any size).

use anyhow::Context;
use futures_util::StreamExt;
use ledger_core::TenantId;
use ledger_core::codec;
use ledger_core::id::{StreamId, StreamVersion};
use ledger_store::{AnyStore, AppendRequest, EventStore, StreamAppend};
use tally_sim::{SimConfig, simulate};

/// What seeding wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seeded {
    pub events: u64,
    pub commands: u64,
}

/// Simulates one tenant and appends its log, each stream's events in
/// version order, at most [`ledger_store::APPEND_STREAMS_MAX`] streams per
/// append.
///
/// # Errors
/// The store's, or a simulated record that does not decode.
pub async fn seed_tenant(store: &AnyStore, config: SimConfig) -> anyhow::Result<Seeded> {
    let tenant_id = config.tenant_id;
    let (ledger, stats) = tokio::task::spawn_blocking(move || simulate(config))
        .await
        .context("simulating")?;
    let empty = || AppendRequest {
        heads: Vec::new(),
        tenant_id,
        streams: Vec::new(),
        idempotency: None,
    };
    let mut request = empty();
    let mut events = 0u64;
    for bytes in ledger.records() {
        let envelope = codec::decode(bytes)?;
        let stream: StreamId = envelope.stream();
        let full = request.event_count() >= ledger_store::APPEND_EVENTS_MAX
            || request.streams.len() >= ledger_store::APPEND_STREAMS_MAX;
        let repeats = request.streams.iter().any(|s| s.stream == stream);
        if full || repeats {
            events += request.event_count() as u64;
            store
                .append(std::mem::replace(&mut request, empty()))
                .await?;
        }
        let expected = StreamVersion::new(envelope.version().get() - 1);
        request.streams.push(StreamAppend {
            stream,
            expected,
            events: vec![codec::Sealed {
                envelope,
                bytes: bytes.clone(),
            }],
        });
    }
    if !request.streams.is_empty() {
        events += request.event_count() as u64;
        store.append(request).await?;
    }
    Ok(Seeded {
        events,
        commands: stats.commands,
    })
}

/// Seeds `tenants` tenants (`sim-0000`, `sim-0001`, ...), each simulated
/// from `base` with its own seed, `parallel` at a time (tenants share no
/// stream, so their appends interleave freely and the embedded store
/// commits them in groups). `each` is told every tenant seeded.
///
/// # Errors
/// As [`seed_tenant`].
pub async fn seed_tenants(
    store: &AnyStore,
    base: SimConfig,
    tenants: u32,
    parallel: usize,
    mut each: impl FnMut(Seeded),
) -> anyhow::Result<Seeded> {
    let mut total = Seeded::default();
    let mut running = futures_util::stream::iter((0..tenants).map(|i| {
        let config = SimConfig {
            seed: base.seed.wrapping_add(u64::from(i)),
            tenant_id: TenantId::new(&format!("sim-{i:04}")),
            ..base.clone()
        };
        seed_tenant(store, config)
    }))
    .buffer_unordered(parallel.max(1));
    while let Some(seeded) = running.next().await {
        let seeded = seeded?;
        total.events += seeded.events;
        total.commands += seeded.commands;
        each(seeded);
    }
    Ok(total)
}
