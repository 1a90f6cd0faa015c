"""Where partition processors run: a `Worker` process (`tether serve`) or Ray actors (`--ray`).

- `worker`: one process hosting the processors of the partitions it is assigned;
- `ray`: long-lived workers hosted by Ray actors, each consuming Kafka itself;
- `logs`: logging set-up for the CLI and workers (the library itself adds no handlers).
"""
