"""``emulate-cluster up`` refuses a CPU period outside 1..1000 ms before touching the system."""
import pytest

from diagnosenet.emulation import STATE, up


@pytest.mark.parametrize("period", [0.5, 2000.0])
def test_cpu_period_out_of_range_is_refused_and_creates_nothing(period):
    existed = STATE.exists()
    with pytest.raises(ValueError, match="cpu-period-ms"):
        up(2, cpu_period_ms=period)
    assert STATE.exists() == existed


def test_cpu_and_link_are_one_value_for_every_node_or_one_per_node():
    from diagnosenet.emulation import per_node

    assert per_node("0.25", 3, "--cpu", float) == [0.25, 0.25, 0.25]
    assert per_node("0.5, 0.25,0.25", 3, "--cpu", float) == [0.5, 0.25, 0.25]
    assert per_node([0.5, 0.25], 2, "--cpu", float) == [0.5, 0.25]
    assert per_node("1gbit,100mbit", 2, "--link") == ["1gbit", "100mbit"]
    with pytest.raises(ValueError, match="--link: 2 values for 3 nodes"):
        per_node("1gbit,100mbit", 3, "--link")


@pytest.mark.parametrize("cpu", ["0.5,0.25", "0.5,0,0.25"])
def test_a_wrong_per_node_cpu_list_is_refused_and_creates_nothing(cpu):
    existed = STATE.exists()
    with pytest.raises(ValueError, match="--cpu"):
        up(3, cpu=cpu)
    assert STATE.exists() == existed
