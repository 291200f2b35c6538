//! The smallest useful producer (shown in docs/CLIENT.md): sends ten keyed records and
//! waits for each acknowledgement. `cargo run -p strand-client --example quickstart_producer`
//! against a node on $STRAND_BOOTSTRAP (default 127.0.0.1:7070) with a topic `orders`
//! (`strand topic create orders --partitions 3`).

use strand_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), strand_client::ClientError> {
    let bootstrap = std::env::var("STRAND_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:7070".to_string());
    let client = Client::connect(ClientConfig::new(bootstrap)).await?;
    let producer = Producer::new(client, ProducerConfig::default()).await?;
    for i in 0..10 {
        let record = ProducerRecord::new("orders", format!("order {i}")).key(format!("customer-{}", i % 3));
        let delivery = producer.send(record).await?; // queued: waits only when the buffer is full
        let stored = delivery.await?; // acknowledged (acks = leader by default)
        println!("stored at partition {} offset {:?}", stored.partition, stored.offset);
    }
    producer.flush().await?; // sends anything still lingering; nothing is left here
    Ok(())
}
