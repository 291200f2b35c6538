"""The Python Kafka client (confluent-kafka, librdkafka) against one Strand node: topic
admin, the idempotent producer, and a subscribed consumer group with manual commits.
Prints `ok STEP` per step and exits non-zero with the failed assertion otherwise.
Usage: python_client.py BOOTSTRAP   (run by node/tests/kafka_python.rs)
"""
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})


def done(futures):
    return {k: f.result(timeout=30) for k, f in futures.items()}


# Topic admin: create with a config, describe it, grow, list, delete.
done(admin.create_topics([NewTopic("py", num_partitions=2, replication_factor=1,
                                   config={"retention.ms": "3600000"})]))
done(admin.create_topics([NewTopic("doomed", num_partitions=1, replication_factor=1)]))
try:
    done(admin.create_topics([NewTopic("py", num_partitions=2, replication_factor=1)]))
    raise AssertionError("a second create of the same topic must fail")
except KafkaException as e:
    assert e.args[0].code() == 36, e  # TOPIC_ALREADY_EXISTS
configs = done(admin.describe_configs([ConfigResource("topic", "py")]))
entries = list(configs.values())[0]
assert entries["retention.ms"].value == "3600000", entries["retention.ms"]
done(admin.create_partitions([NewPartitions("py", 3)]))
meta = admin.list_topics(timeout=10)
assert len(meta.topics["py"].partitions) == 3, meta.topics["py"].partitions
done(admin.delete_topics(["doomed"], operation_timeout=10))
assert "doomed" not in admin.list_topics(timeout=10).topics
print("ok admin", flush=True)

# The idempotent producer (InitProducerId, sequence numbers), keyed, every codec.
errors = []
for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "compression.type": codec, "linger.ms": 5})
    for i in range(200):
        p.produce("py", key=f"k{i % 7}", value=f"{codec}-{i}",
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0, "undelivered messages"
assert not errors, errors
print("ok idempotent producer", flush=True)

# A subscribed group with manual commits: consume everything, commit, and a new member of
# the group starts after the commit.
def consumer():
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "py-group", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 6000})


c = consumer()
c.subscribe(["py"])
seen = []
deadline = time.time() + 60
while len(seen) < 1000 and time.time() < deadline:
    msg = c.poll(1.0)
    if msg is None:
        continue
    assert msg.error() is None, msg.error()
    seen.append(msg.value().decode())
assert len(seen) == 1000, f"{len(seen)} of 1000 consumed"
assert len(set(seen)) == 1000, "a message was consumed twice"
c.commit(asynchronous=False)
committed = c.committed([TopicPartition("py", p) for p in range(3)], timeout=10)
assert sum(tp.offset for tp in committed if tp.offset > 0) == 1000, committed
c.close()

p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
p.produce("py", value="after-commit")
assert p.flush(30) == 0
c = consumer()
c.subscribe(["py"])
later = []
deadline = time.time() + 30
while not later and time.time() < deadline:
    msg = c.poll(1.0)
    if msg is not None and msg.error() is None:
        later.append(msg.value().decode())
c.close()
assert later == ["after-commit"], later
print("ok consumer group", flush=True)
