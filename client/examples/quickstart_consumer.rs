//! The smallest useful group consumer (shown in docs/CLIENT.md): joins group `billing` on
//! topic `orders`, prints records until one second passes without any, then commits and
//! leaves. `cargo run -p strand-client --example quickstart_consumer` (node: $STRAND_BOOTSTRAP,
//! default 127.0.0.1:7070).

use std::time::Duration;

use strand_client::{Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset};

#[tokio::main]
async fn main() -> Result<(), strand_client::ClientError> {
    let bootstrap = std::env::var("STRAND_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:7070".to_string());
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let config = ConsumerConfig { auto_offset_reset: OffsetReset::Earliest, ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(client, config);
    consumer.subscribe("billing", &["orders"]).await?;
    loop {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        if records.is_empty() {
            break; // a service would keep polling (and stop on a signal instead)
        }
        for r in &records {
            let value = r.value.as_deref().unwrap_or(b"null"); // None: a tombstone
            println!("{}/{}: {}", r.partition, r.offset, String::from_utf8_lossy(value));
        }
    }
    consumer.close().await // commits what poll returned, then leaves the group
}
