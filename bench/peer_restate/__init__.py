"""The Restate peer: install it, run its Counter service, and measure it the way PEERS.md says."""

from bench.peer_restate.driver import WORKLOADS, run_restate

__all__ = ["WORKLOADS", "run_restate"]
