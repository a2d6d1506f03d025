"""The fault suite: crashes, replays, concurrent replicas, hot swaps, a frozen Redis, liveness.

Run all of it with ``python -m bench.faults`` (about ten minutes on two cores), or some with
``--only crashes,replicas-2``. Every target is on 127.0.0.1; every process is stopped at the
end. Each scenario writes ``bench/results/faults-<scenario>.json`` + ``.md`` with its figures
and which guarantees held, and the command exits non-zero if any did not.
"""
