"""A loopback simulator of fal.ai's queue API and CDN, for `tryon demo` and the test suite."""

from devtools.fal_simulator.engine import Counts
from devtools.fal_simulator.faults import JOB_FAULTS, JobFault
from devtools.fal_simulator.server import DEFAULT_KEY, FalSimulator, SeenRequest

__all__ = ["DEFAULT_KEY", "JOB_FAULTS", "Counts", "FalSimulator", "JobFault", "SeenRequest"]
