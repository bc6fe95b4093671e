//! The event table's change stream (its DynamoDB Stream), read shard by
//! shard: the one reader of it in the workspace.
//!
//! A change stream is not an event stream: it carries every item write of
//! the table (events and idempotency items) once, ordered within a shard
//! only. Shards split and roll over; a child is read after its parents.
//! [`ChangeStream`] makes the three calls a reader needs (list shards, take
//! an iterator, read a page) and sorts their failures into the few a
//! reader reacts to differently ([`ShardReadError`]). Who reads decides the
//! policy: the store's log follower (one shard at a time, in order), and
//! the local stand-in for Lambda's event source mapping (every shard, with
//! partial-batch retries). The shard lineage rules ([`ready_shards`]) and
//! the order of sequence numbers ([`compare_sequence_numbers`]) are the
//! same for a Kinesis stream, whose reader shares these types.

use std::cmp::Ordering;
use std::collections::HashSet;

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

/// A shard as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// The shards it was split or merged from.
    pub parents: Vec<String>,
    /// The sequence number of its first record, when the listing gives it.
    pub first_sequence: Option<String>,
}

/// Where a shard iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardPosition {
    TrimHorizon,
    At(String),
    After(String),
}

/// A failed listing, iterator or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardReadError {
    /// The iterator expired: take a new one from the last position.
    #[error("the shard iterator expired")]
    Expired,
    /// The position is older than the stream's retention: start again from
    /// the trim horizon (those records are gone).
    #[error("{0}")]
    Trimmed(String),
    /// Anything else (throttled, unreachable, refused): retry after a backoff.
    #[error("{0}")]
    Other(String),
}

/// One read of a shard.
#[derive(Debug)]
pub struct ShardPage<R> {
    pub records: Vec<R>,
    /// The iterator to read on with; `None` once a closed shard has been
    /// read to its end.
    pub next: Option<String>,
    /// Nothing new: the shard's current end.
    pub at_end: bool,
}

/// A table's DynamoDB Stream.
#[derive(Debug, Clone)]
pub struct ChangeStream {
    client: Client,
    arn: String,
}

impl ChangeStream {
    pub fn new(client: Client, arn: String) -> ChangeStream {
        ChangeStream { client, arn }
    }

    /// The stream's ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Every shard the stream lists, following `DescribeStream`'s pages.
    ///
    /// # Errors
    /// When a `DescribeStream` fails.
    pub async fn shards(&self) -> Result<Vec<ShardInfo>, ShardReadError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let described = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| ShardReadError::Other(streams_error("DescribeStream", e)))?;
            let description = described.stream_description.ok_or_else(|| {
                ShardReadError::Other("DescribeStream returned no description".into())
            })?;
            shards.extend(
                description
                    .shards
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|shard| {
                        Some(ShardInfo {
                            first_sequence: shard
                                .sequence_number_range
                                .and_then(|r| r.starting_sequence_number),
                            id: shard.shard_id?,
                            parents: shard.parent_shard_id.into_iter().collect(),
                        })
                    }),
            );
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(shards),
            }
        }
    }

    /// An iterator into `shard` from `from`.
    ///
    /// # Errors
    /// [`ShardReadError::Trimmed`] when `from` is past the retention.
    pub async fn iterator(
        &self,
        shard: &str,
        from: &ShardPosition,
    ) -> Result<String, ShardReadError> {
        let (kind, sequence) = match from {
            ShardPosition::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            ShardPosition::At(s) => (ShardIteratorType::AtSequenceNumber, Some(s.clone())),
            ShardPosition::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s.clone())),
        };
        let got = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence)
            .send()
            .await;
        match got {
            Ok(got) => got.shard_iterator.ok_or_else(|| {
                ShardReadError::Other("GetShardIterator returned no iterator".into())
            }),
            Err(e) => Err(match e.as_service_error() {
                Some(s) if s.is_trimmed_data_access_exception() => {
                    ShardReadError::Trimmed(streams_error("GetShardIterator", e))
                }
                _ => ShardReadError::Other(streams_error("GetShardIterator", e)),
            }),
        }
    }

    /// One `GetRecords` of at most `limit` records.
    ///
    /// # Errors
    /// [`ShardReadError::Expired`] for an expired iterator,
    /// [`ShardReadError::Trimmed`] for records past the retention.
    pub async fn read(
        &self,
        iterator: String,
        limit: usize,
    ) -> Result<ShardPage<Record>, ShardReadError> {
        let got = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await;
        let got = got.map_err(|e| match e.as_service_error() {
            Some(s) if s.is_expired_iterator_exception() => ShardReadError::Expired,
            Some(s) if s.is_trimmed_data_access_exception() => {
                ShardReadError::Trimmed(streams_error("GetRecords", e))
            }
            _ => ShardReadError::Other(streams_error("GetRecords", e)),
        })?;
        let records = got.records.unwrap_or_default();
        Ok(ShardPage {
            at_end: records.is_empty(),
            records,
            next: got.next_shard_iterator,
        })
    }
}

/// Which shards may be read now: not finished, not already being read, and
/// every parent finished or no longer listed (trimmed, so it counts as
/// read). Listing order is kept.
pub fn ready_shards<'a>(
    listing: &'a [ShardInfo],
    finished: &HashSet<String>,
    reading: &HashSet<String>,
) -> Vec<&'a ShardInfo> {
    let listed: HashSet<&str> = listing.iter().map(|s| s.id.as_str()).collect();
    listing
        .iter()
        .filter(|s| !finished.contains(&s.id) && !reading.contains(&s.id))
        .filter(|s| {
            s.parents
                .iter()
                .all(|p| finished.contains(p) || !listed.contains(p.as_str()))
        })
        .collect()
}

/// Orders sequence numbers as the numbers they spell: decimal strings of
/// varying length, so "9" < "10". Leading zeros do not count.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn streams_error(operation: &str, e: impl std::error::Error) -> String {
    format!(
        "DynamoDB Streams {operation}: {}",
        aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| (*p).into()).collect(),
            first_sequence: None,
        }
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ready<'a>(listing: &'a [ShardInfo], finished: &[&str], reading: &[&str]) -> Vec<&'a str> {
        ready_shards(listing, &set(finished), &set(reading))
            .into_iter()
            .map(|s| s.id.as_str())
            .collect()
    }

    #[test]
    fn a_child_waits_for_its_parent_along_a_chain() {
        let listing = [shard("a", &[]), shard("b", &["a"]), shard("c", &["b"])];
        assert_eq!(ready(&listing, &[], &[]), ["a"]);
        assert!(ready(&listing, &[], &["a"]).is_empty());
        assert_eq!(ready(&listing, &["a"], &[]), ["b"]);
        assert_eq!(ready(&listing, &["a", "b"], &[]), ["c"]);
        assert!(ready(&listing, &["a", "b", "c"], &[]).is_empty());
    }

    #[test]
    fn both_halves_of_a_split_start_together_after_the_parent() {
        let listing = [shard("p", &[]), shard("l", &["p"]), shard("r", &["p"])];
        assert_eq!(ready(&listing, &[], &[]), ["p"]);
        assert_eq!(ready(&listing, &["p"], &[]), ["l", "r"]);
        assert_eq!(ready(&listing, &["p"], &["l"]), ["r"]);
    }

    #[test]
    fn a_merge_waits_for_both_parents() {
        let listing = [shard("x", &[]), shard("y", &[]), shard("m", &["x", "y"])];
        assert_eq!(ready(&listing, &[], &[]), ["x", "y"]);
        assert_eq!(ready(&listing, &["x"], &["y"]), Vec::<&str>::new());
        assert_eq!(ready(&listing, &["x", "y"], &[]), ["m"]);
    }

    #[test]
    fn a_trimmed_parent_counts_as_read() {
        let listing = [shard("b", &["gone"]), shard("c", &["b"])];
        assert_eq!(ready(&listing, &[], &[]), ["b"]);
        // Several open shards with trimmed parents all start at once.
        let listing = [shard("s1", &["t1"]), shard("s2", &["t2"]), shard("s3", &[])];
        assert_eq!(ready(&listing, &[], &[]), ["s1", "s2", "s3"]);
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_sequence_numbers("9", "10"), Less);
        assert_eq!(
            compare_sequence_numbers("000000000000000000010", "9"),
            Greater
        );
        assert_eq!(compare_sequence_numbers("0042", "42"), Equal);
        assert_eq!(
            compare_sequence_numbers(
                "49568167373333333333333333333333333333333333333333333333",
                "49568167373333333334444444444444444444444444444444444444"
            ),
            Less
        );
        assert_eq!(compare_sequence_numbers("", "0"), Equal);
    }
}
