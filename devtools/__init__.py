"""Loopback stand-ins for the test suite, the benchmarks and ``tryon demo``: the fal.ai simulator, the dev
JWT issuer, the local stack (ministack, redis-server, gunicorn) and the demo walk-through. Not packaged for
production; no production module imports it (setup.cfg's contract ``production-without-devtools``)."""
