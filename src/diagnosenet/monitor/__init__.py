"""enerGyPU-style monitor: per-process, host, GPU (NVML), Jetson (tegrastats) and RAPL samples."""
from diagnosenet.monitor.sampler import Monitor

__all__ = ["Monitor"]
