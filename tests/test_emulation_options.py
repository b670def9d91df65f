"""``emulate-cluster up`` refuses a CPU period outside 1..1000 ms before touching the system."""
import pytest

from diagnosenet.emulation import STATE, up


@pytest.mark.parametrize("period", [0.5, 2000.0])
def test_cpu_period_out_of_range_is_refused_and_creates_nothing(period):
    existed = STATE.exists()
    with pytest.raises(ValueError, match="cpu-period-ms"):
        up(2, cpu_period_ms=period)
    assert STATE.exists() == existed
