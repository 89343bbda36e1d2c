"""A loopback simulator of fal.ai's queue API and CDN, for `tryon demo` and the test suite."""

from entrypoints.fal_simulator.engine import Counts
from entrypoints.fal_simulator.faults import JOB_FAULTS, JobFault
from entrypoints.fal_simulator.server import DEFAULT_KEY, FalSimulator, SeenRequest

__all__ = ["DEFAULT_KEY", "JOB_FAULTS", "Counts", "FalSimulator", "JobFault", "SeenRequest"]
