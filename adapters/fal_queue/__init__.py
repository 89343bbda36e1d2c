"""fal.ai's queue API behind the ``ImageGenerator`` port."""

from adapters.fal_queue.classify import Verdict, classify_download, classify_response, classify_transport
from adapters.fal_queue.generator import FalQueueGenerator
from adapters.fal_queue.urls import Origin, ResultHosts, origin_of, sniff_image_type

__all__ = [
    "FalQueueGenerator",
    "Origin",
    "ResultHosts",
    "Verdict",
    "classify_download",
    "classify_response",
    "classify_transport",
    "origin_of",
    "sniff_image_type",
]
