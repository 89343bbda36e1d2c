"""What several test modules build alike, in one place; a test module never imports another test module.

- ``app``: the real HTTP app with every port faked (the unit tier, and the fuzzing in tests/e2e).
- ``worlds``: the domain's services wired to fakes (the unit tier).
- ``databases``: a fresh Postgres schema, SQLite or Postgres backends, records to store (integration, e2e).
- ``stack``: buckets, settings and environment of our processes on the emulated stack, worker processes, and
  the client's steps (e2e, faults).
- ``loopback``: a loopback HTTP server for the tests that play the other side of a call (integration).
"""
