"""`make bench`: issuance latency and throughput beside a hand-built floor (``bench.issuance``), and
`complete` latency for a 12 MP selfie beside the naive pipeline (``bench.verification``), on loopback."""
