//! The event source mapping emulators against the real emulators: the
//! DynamoDB Streams runner on DynamoDB Local, and the Kinesis shim and
//! runner on kinesalite. Each test has tables and streams of its own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse,
};
use aws_local::emulator::{Emulator, Kind, unique_prefix};
use aws_local::kinesis::{KinesisRunner, KinesisRunnerConfig};
use aws_local::mapping::{RunnerHandle, RunnerStats};
use aws_local::shim::{Faults, KinesisShim, ShimConfig};
use aws_local::streams::{StreamsRunner, StreamsRunnerConfig};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use ledger_store::dynamodb::change::DynamoChangeRecord;
use ledger_store::dynamodb::{create_tables, sdk_config};

/// Longest wait for a runner to catch up in these tests.
const CATCH_UP_MAX: Duration = Duration::from_secs(20);

/// A fresh event table (the project's schema, stream and all) on the
/// shared DynamoDB Local.
async fn event_table(label: &str) -> (aws_sdk_dynamodb::Client, String) {
    let endpoint = Emulator::shared(Kind::DynamoDb).endpoint().to_owned();
    let sdk = sdk_config(Some(&endpoint)).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let prefix = unique_prefix(label);
    create_tables(&client, &prefix)
        .await
        .expect("create tables on DynamoDB Local");
    (client, format!("{prefix}events"))
}

/// An item's key as the tests name it.
type ItemKey = (String, u64);

/// Writes `count` event items, one after another, spread over a few
/// aggregates: item `i` is version `i / 3 + 1` of stream `i % 3`.
async fn write_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    range: std::ops::Range<usize>,
) -> Vec<ItemKey> {
    let mut written = Vec::new();
    for i in range {
        let key = (format!("acme|credit/E{}", i % 3), (i / 3 + 1) as u64);
        client
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S(key.0.clone()))
            .item("v", AttributeValue::N(key.1.to_string()))
            .item("b", AttributeValue::B(Blob::new(vec![i as u8; 16])))
            .send()
            .await
            .expect("put an event item");
        written.push(key);
    }
    written
}

fn item_key(record: &EventRecord) -> ItemKey {
    use serde_dynamo::AttributeValue as D;
    let pk = match record.change.keys.get("pk") {
        Some(D::S(pk)) => pk.clone(),
        other => panic!("record without a string pk: {other:?}"),
    };
    let v = match record.change.keys.get("v") {
        Some(D::N(v)) => v.parse().expect("a numeric version"),
        other => panic!("record without a numeric v: {other:?}"),
    };
    (pk, v)
}

fn sequence_number(record: &EventRecord) -> u128 {
    record
        .change
        .sequence_number
        .as_deref()
        .expect("every delivered record has a sequence number")
        .parse()
        .expect("DynamoDB Local's sequence numbers are decimal")
}

/// Every batch a handler was called with, in call order.
type Batches = Arc<Mutex<Vec<Vec<EventRecord>>>>;

/// A Streams runner on `table` whose handler records each batch and
/// answers with `answer(call number, batch)`.
async fn recording_runner(
    table: &str,
    batch_size: usize,
    answer: impl Fn(usize, &[EventRecord]) -> DynamoDbEventResponse + Send + Sync + 'static,
) -> (RunnerHandle, Batches) {
    let batches: Batches = Arc::default();
    let seen = batches.clone();
    let mut config = StreamsRunnerConfig::new(
        Some(Emulator::shared(Kind::DynamoDb).endpoint().into()),
        table,
    );
    config.mapping.batch_size = batch_size;
    let answer = Arc::new(answer);
    let runner = StreamsRunner::start(config, move |event: Event| {
        let seen = seen.clone();
        let answer = answer.clone();
        async move {
            let call = {
                let mut seen = seen.lock().unwrap();
                seen.push(event.records.clone());
                seen.len() - 1
            };
            answer(call, &event.records)
        }
    })
    .await
    .expect("start the Streams runner");
    (runner, batches)
}

fn acknowledge(_: usize, _: &[EventRecord]) -> DynamoDbEventResponse {
    DynamoDbEventResponse::default()
}

fn failing(identifier: Option<String>) -> DynamoDbEventResponse {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = identifier;
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures.push(failure);
    response
}

/// Each batch as the indexes of its records among `written`.
fn indexes(batches: &Batches, written: &[ItemKey]) -> Vec<Vec<usize>> {
    let index: HashMap<&ItemKey, usize> = written.iter().enumerate().map(|(i, k)| (k, i)).collect();
    batches
        .lock()
        .unwrap()
        .iter()
        .map(|batch| batch.iter().map(|r| index[&item_key(r)]).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_written_record_is_delivered_in_shard_order() {
    let (client, table) = event_table("runner-order").await;
    let mut written = write_items(&client, &table, 0..120).await;
    let (runner, batches) = recording_runner(&table, 100, acknowledge).await;
    // Records written while the runner reads arrive too.
    written.extend(write_items(&client, &table, 120..150).await);
    runner.caught_up(CATCH_UP_MAX).await.expect("catch up");

    let batches = batches.lock().unwrap().clone();
    let delivered: Vec<&EventRecord> = batches.iter().flatten().collect();
    let keys: Vec<ItemKey> = delivered.iter().map(|r| item_key(r)).collect();
    assert_eq!(keys, written, "every record once, in the order written");
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 100));
    let sequence: Vec<u128> = delivered.iter().map(|r| sequence_number(r)).collect();
    assert!(sequence.windows(2).all(|w| w[0] < w[1]), "shard order");
    for record in &delivered {
        assert_eq!(record.event_name, "INSERT");
        assert_eq!(record.event_source.as_deref(), Some("aws:dynamodb"));
        assert_eq!(
            record.event_source_arn.as_deref(),
            Some(runner.source_arn())
        );
        assert!(record.event_version.is_some() && !record.event_id.is_empty());
        assert!(record.change.new_image.contains_key("b"));
        assert!(record.change.approximate_creation_date_time.timestamp() > 1_700_000_000);
    }
    let stats = runner.stats();
    assert_eq!(stats.records_delivered, 150);
    assert_eq!(stats.records_acknowledged, 150);
    assert_eq!(stats.batches_delivered, batches.len() as u64);
    assert_eq!(stats.redeliveries, 0);
    assert!(stats.last_acknowledged_at.is_some());
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_is_redelivered_with_everything_after_it() {
    let (client, table) = event_table("runner-partial").await;
    let written = write_items(&client, &table, 0..30).await;
    let poison = written[14].clone();
    let failed_once = Arc::new(Mutex::new(false));
    let (runner, batches) = recording_runner(&table, 10, move |_, batch| {
        let mut failed = failed_once.lock().unwrap();
        match batch.iter().find(|r| item_key(r) == poison) {
            Some(record) if !*failed => {
                *failed = true;
                // The records after it in the batch succeeded; Lambda
                // redelivers them anyway.
                failing(record.change.sequence_number.clone())
            }
            _ => DynamoDbEventResponse::default(),
        }
    })
    .await;
    runner.caught_up(CATCH_UP_MAX).await.expect("catch up");

    let batches = indexes(&batches, &written);
    let failed_batch = batches
        .iter()
        .position(|b| b.contains(&14))
        .expect("record 14 delivered");
    assert_eq!(
        batches[failed_batch + 1].first(),
        Some(&14),
        "the redelivery starts at the failed record: {batches:?}"
    );
    let mut deliveries: HashMap<usize, usize> = HashMap::new();
    for index in batches.iter().flatten() {
        *deliveries.entry(*index).or_default() += 1;
    }
    let after_failed: HashSet<usize> = batches[failed_batch]
        .iter()
        .copied()
        .filter(|&i| i >= 14)
        .collect();
    for i in 0..30 {
        let expected = if after_failed.contains(&i) { 2 } else { 1 };
        assert_eq!(
            deliveries.get(&i),
            Some(&expected),
            "record {i}: {batches:?}"
        );
    }
    assert!(
        after_failed.len() > 1,
        "records after it were in the failed batch"
    );
    let stats = runner.stats();
    assert_eq!(stats.redeliveries, 1);
    assert_eq!(stats.records_acknowledged, 30);
    assert_eq!(
        stats.records_delivered,
        deliveries.values().sum::<usize>() as u64
    );
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_identifier_or_a_panic_redelivers_the_whole_batch() {
    let (client, table) = event_table("runner-invalid").await;
    let written = write_items(&client, &table, 0..30).await;
    for (label, answer_on_second_call) in [
        ("unknown identifier", 0),
        ("null identifier", 1),
        ("panic", 2),
    ] {
        let (runner, batches) = recording_runner(&table, 10, move |call, _| match call {
            1 if answer_on_second_call == 0 => failing(Some("12345678901234567890".into())),
            1 if answer_on_second_call == 1 => failing(None),
            1 => panic!("the handler fails the whole batch"),
            _ => DynamoDbEventResponse::default(),
        })
        .await;
        runner.caught_up(CATCH_UP_MAX).await.expect("catch up");
        let batches = indexes(&batches, &written);
        assert!(batches.len() >= 3, "{label}: {batches:?}");
        assert_eq!(batches[2], batches[1], "{label}: the same batch again");
        assert!(
            batches[0].iter().all(|i| !batches[1].contains(i)),
            "{label}: nothing before it"
        );
        let flat: Vec<usize> = batches.iter().flatten().copied().collect();
        let once: HashSet<usize> = flat.iter().copied().collect();
        assert_eq!(once.len(), 30, "{label}: every record");
        assert_eq!(
            flat.len(),
            30 + batches[1].len(),
            "{label}: only that batch twice"
        );
        assert_eq!(runner.stats().redeliveries, 1, "{label}");
        runner.stop().await;
    }
}

/// Whether a runner's stats watch closes (its last update read first),
/// which it does once the handle and every task have dropped their share.
async fn closes(mut stats: tokio::sync::watch::Receiver<RunnerStats>) -> bool {
    let closed = async { while stats.changed().await.is_ok() {} };
    let closed = tokio::time::timeout(Duration::from_secs(1), closed)
        .await
        .is_ok();
    closed && stats.borrow().shards_reading == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_every_task() {
    let (client, table) = event_table("runner-stop").await;
    write_items(&client, &table, 0..5).await;
    let (runner, batches) = recording_runner(&table, 100, acknowledge).await;
    runner.caught_up(CATCH_UP_MAX).await.expect("catch up");
    let stats = runner.subscribe();
    assert_eq!(
        stats.borrow().shards_reading,
        1,
        "DynamoDB Local: one shard"
    );
    let started = std::time::Instant::now();
    runner.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an idle runner stops at once"
    );
    assert!(closes(stats).await, "every task ended");
    let calls = batches.lock().unwrap().len();
    write_items(&client, &table, 5..10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        batches.lock().unwrap().len(),
        calls,
        "nothing delivered after stop"
    );
}

/// What the Kinesis handler saw: per shard, the records in delivery order.
type KinesisSeen = Arc<Mutex<Vec<(String, String, DynamoChangeRecord)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shim_duplicates_and_reorders_and_the_kinesis_runner_delivers_everything() {
    const RECORDS: usize = 60;
    let (client, table) = event_table("shim").await;
    write_items(&client, &table, 0..RECORDS).await;
    let dynamo_endpoint = Some(Emulator::shared(Kind::DynamoDb).endpoint().to_owned());
    let kinesis_endpoint = Some(Emulator::shared(Kind::Kinesis).endpoint().to_owned());

    // The table's own stream, as the oracle.
    let (oracle, stream_batches) = recording_runner(&table, 100, acknowledge).await;
    oracle
        .caught_up(CATCH_UP_MAX)
        .await
        .expect("oracle catches up");
    let stream: Vec<EventRecord> = stream_batches.lock().unwrap().concat();
    assert_eq!(stream.len(), RECORDS);

    let stream_name = format!("{}changes", unique_prefix("shim"));
    let mut source = StreamsRunnerConfig::new(dynamo_endpoint, table.clone());
    source.mapping.batch_size = 10;
    let shim = KinesisShim::start(ShimConfig {
        source,
        kinesis_endpoint: kinesis_endpoint.clone(),
        stream_name: stream_name.clone(),
        shard_count: 2,
        faults: Faults {
            seed: 7,
            duplicate_probability: 0.3,
            hold_back_probability: 0.05,
            reorder_window: 8,
        },
    })
    .await
    .expect("start the shim");

    let seen: KinesisSeen = Arc::default();
    let record_seen = seen.clone();
    let kinesis = KinesisRunner::start(
        KinesisRunnerConfig::new(kinesis_endpoint, stream_name),
        move |event: KinesisEvent| {
            let seen = record_seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                for record in event.records {
                    let shard = record
                        .event_id
                        .as_deref()
                        .and_then(|id| id.split_once(':'))
                        .map(|(shard, _)| shard.to_owned())
                        .expect("eventID is shardId:sequence");
                    let change: DynamoChangeRecord =
                        serde_json::from_slice(&record.kinesis.data).expect("change record JSON");
                    seen.push((shard, record.kinesis.sequence_number, change));
                }
                KinesisEventResponse::default()
            }
        },
    )
    .await
    .expect("start the Kinesis runner");

    shim.runner()
        .caught_up(CATCH_UP_MAX)
        .await
        .expect("the shim catches up");
    kinesis
        .caught_up(CATCH_UP_MAX)
        .await
        .expect("the Kinesis runner catches up");
    let seen = seen.lock().unwrap().clone();

    // Every Kinesis record written was delivered, once (no failures here).
    let written_count = shim.records_written();
    assert_eq!(seen.len() as u64, written_count);
    let sequences: HashSet<&String> = seen.iter().map(|(_, s, _)| s).collect();
    assert_eq!(sequences.len(), seen.len());
    assert_eq!(kinesis.stats().records_acknowledged, written_count);

    // Every table change arrived, with its keys and image intact.
    let by_id: HashMap<&str, &EventRecord> =
        stream.iter().map(|r| (r.event_id.as_str(), r)).collect();
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for (_, _, change) in &seen {
        let source = by_id
            .get(change.event_id.as_str())
            .unwrap_or_else(|| panic!("{} is no table change", change.event_id));
        assert_eq!(change.dynamodb.keys, source.change.keys);
        assert_eq!(
            change.dynamodb.new_image.as_ref(),
            Some(&source.change.new_image)
        );
        assert_eq!(change.table_name, table);
        assert_eq!(change.record_format, "application/json");
        *copies.entry(change.event_id.as_str()).or_default() += 1;
    }
    assert_eq!(copies.len(), RECORDS, "every change at least once");
    assert!(
        written_count > RECORDS as u64,
        "duplicates happened: {written_count}"
    );
    assert!(copies.values().any(|&n| n > 1));

    // Within some Kinesis shard, changes arrive out of table order.
    let position: HashMap<&str, usize> = stream
        .iter()
        .enumerate()
        .map(|(i, r)| (r.event_id.as_str(), i))
        .collect();
    let shards: HashSet<&String> = seen.iter().map(|(shard, _, _)| shard).collect();
    assert_eq!(shards.len(), 2, "items spread over both shards");
    let reordered = shards.iter().any(|shard| {
        let order: Vec<usize> = seen
            .iter()
            .filter(|(s, _, _)| s == *shard)
            .map(|(_, _, c)| position[c.event_id.as_str()])
            .collect();
        order.windows(2).any(|w| w[0] > w[1])
    });
    assert!(reordered, "some shard is out of table order");

    let stats = kinesis.subscribe();
    kinesis.stop().await;
    shim.stop().await;
    oracle.stop().await;
    assert!(closes(stats).await, "the Kinesis runner's tasks ended");
}
