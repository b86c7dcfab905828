"""``casty demo``: the spec's distributed task queue on three local node processes.

`casty.demo.queue` is the event-sourced task-queue entity and its messages (every node and
the client import it, so the wire names are stable); `casty.demo.node` is the node process;
`casty.demo.cluster` starts, kills and restarts node processes; `casty.demo.load` submits
tasks through a `ClusterClient` with idempotent retries, reads the queues back and checks
them; `casty.demo.command` is the ``casty demo`` command. See ``docs/getting-started.md``.

Nothing is imported here, so ``casty --help`` stays cheap.
"""
