"""Produces N messages with acks=all through confluent-kafka (librdkafka) and prints one
line per acknowledged message: `ack VALUE PARTITION OFFSET`, then `done ACKED FAILED`.

Used by node/tests/kafka_cluster.rs, which SIGKILLs the partition's leader mid-stream and
then checks that every acknowledged value is stored. Usage:
    produce_through_failover.py BOOTSTRAP TOPIC COUNT
"""
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
failed = 0
acked = 0


def delivered(err, msg):
    global failed, acked
    if err is not None:
        failed += 1
        print(f"fail {msg.value().decode()} {err}", flush=True)
    else:
        acked += 1
        print(f"ack {msg.value().decode()} {msg.partition()} {msg.offset()}", flush=True)


producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "linger.ms": 2,
    "message.timeout.ms": 60000,
    "retry.backoff.ms": 50,
    "topic.metadata.refresh.interval.ms": 1000,
})
for i in range(count):
    while True:
        try:
            producer.produce(topic, value=str(i).encode(), partition=0, on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
    time.sleep(0.002)
producer.flush(90)
print(f"done {acked} {failed}", flush=True)
