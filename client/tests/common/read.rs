//! Reading one partition back from a chosen replica of a cluster.

use std::time::{Duration, Instant};

use strand_client::{Client, ClientConfig, Consumer, ConsumerConfig, ReadPreference, SeekTo};

/// Every value of `topic`/0 as the replica on the node at `bootstrap` serves it
/// (nearest-replica reads): at least `count` values, then until a poll comes back empty
/// (records beyond `count` exist when produces of unknown outcome were stored after all),
/// for at most `settle`.
pub async fn read_replica(bootstrap: &str, topic: &str, count: usize, settle: Duration) -> Vec<String> {
    let config = ClientConfig { read_preference: ReadPreference::Nearest, ..ClientConfig::new(bootstrap) };
    let client = Client::connect(config).await.expect("connect");
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    consumer.assign(topic, 0).await.expect("assign");
    consumer.seek(topic, 0, SeekTo::Earliest).await.expect("seek");
    let mut values = Vec::new();
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline {
        let polled = consumer.poll(Duration::from_millis(500)).await.expect("poll");
        if polled.is_empty() && values.len() >= count {
            break;
        }
        values
            .extend(polled.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"null")).into_owned()));
    }
    values
}
