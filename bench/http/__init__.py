"""The pieces of `bench.http_load`: processes, load drivers, profiles, workloads."""
