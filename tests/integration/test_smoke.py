from harness.lambdas import LocalFunction
from harness.streams import StreamPoller
from harness.world import one_way_world, scan_all


def test_smoke(aws):
    world = one_way_world([("pk", "S"), ("sk", "N")])
    fn = LocalFunction("table_replicator", world.replicator_env())
    for i in range(30):
        world.source.put_item(
            TableName=world.source_table,
            Item={"pk": {"S": f"k{i % 7}"}, "sk": {"N": str(i)}, "b": {"B": b"\x00\xff" * i}},
        )
    world.source.delete_item(TableName=world.source_table, Key={"pk": {"S": "k1"}, "sk": {"N": "1"}})
    poller = StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=10)
    poller.drain()
    assert scan_all(world.source, world.source_table) == scan_all(world.target, world.target_table)
    print(poller.stats)
