"""The engine: what a worker runs for the partitions it owns.

- `processor`: the partition processor, single writer of one partition of inbox, events and
  snapshots, composing its parts: `intake` (routing records, session queues), `running` (one
  handler run), `suspensions` (waits and wake-ups), `failures` (refusals, dead letters,
  parking), `commits` (the group commit loop), `checkpointing` (checkpoint cadence and
  passivation), `outputs` (the records it writes, their size check), `routing` (handler lookup);
- `invocation`: one handler run and its step journal (the `ObjectContext` behind `ctx`);
  `step_results`: how a step's result is journaled and decoded;
- `sessions`: a session's place in its partition; `waits`: suspended invocations, delayed
  messages, timers; `offsets`: the inbox offset a partition may commit; `restore`: checkpoints
  and the rebuild of a partition after a move;
- `deadletters`: a failure as a dead-letter record; `circuits`: breakers per step name;
  `stalls`: the event-loop stall watchdog.

Nothing outside `actors.hosting` imports this package (import-linter contracts): sagas, dlq,
the client and the CLI's read-only commands use the public API and `actors.protocol`;
`bench` uses `PartitionProcessor` from here, never a module of this package.
"""

from .processor import PartitionProcessor

__all__ = ["PartitionProcessor"]
