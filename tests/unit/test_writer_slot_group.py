"""``flink.writer_slot_group`` puts the streaming writers (and their sink) in slots of their
own, and nothing else; unset, the whole graph stays in Flink's default group.

Built with PyFlink's local environment (its JVM gateway, no cluster) and read from the
stream graph Flink would submit.
"""

from __future__ import annotations

import pytest

from feedline.settings import StreamingSettings
from feedline.settings_blocks import FlinkSettings


def slot_groups(writer_slot_group: str | None) -> dict[str, str]:
    """Operator name -> slot sharing group of a graph ending in ``write_and_end``."""
    from pyflink.common import Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from pipelines.streaming.job_graph import write_and_end

    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    effects = env.from_collection(["event"], type_info=Types.STRING()).map(
        lambda _event: (0, []), output_type=Types.PICKLED_BYTE_ARRAY()).name("rules")
    settings = StreamingSettings(flink=FlinkSettings(writer_slot_group=writer_slot_group))
    write_and_end(effects, t_env, settings, "fan-out")
    graph = env._j_stream_execution_environment.getStreamGraph(False)
    return {str(node.getOperatorName()): str(node.getSlotSharingGroup())
            for node in graph.getStreamNodes().toArray()}


@pytest.mark.parametrize("group", [None, "writers"])
def test_the_writers_take_the_slot_group_they_are_given(group: str | None) -> None:
    groups = slot_groups(group)
    writers = {name for name in groups if name == "write-fan-out" or name.startswith("end-")}
    assert len(writers) == 2, groups
    want = group or "default"
    assert {groups[name] for name in writers} == {want}, groups
    assert {g for name, g in groups.items() if name not in writers} == {"default"}, groups
