"""Tether's benchmarks: Tether's workloads, the Restate peer and the raw-aiokafka ceiling."""
