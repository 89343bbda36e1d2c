"""`make bench`: issuance latency and throughput through gunicorn on loopback, beside a hand-built floor."""
