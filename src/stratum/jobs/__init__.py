"""Jobs: a queue in the store, a scheduler, and workers that run each job in a child process.

Generic: it knows job kinds only as dotted paths (``kinds.BUILTIN_KINDS``), never the code behind
them (training, evaluation …), so it sits below those domains.
"""

from stratum.jobs.context import JobContext
from stratum.jobs.scheduler import Scheduler
from stratum.jobs.schemas import JobLogs, JobPublic, JobSubmit, Progress, Resources
from stratum.jobs.service import JobService

__all__ = [
    "JobContext",
    "JobLogs",
    "JobPublic",
    "JobService",
    "JobSubmit",
    "Progress",
    "Resources",
    "Scheduler",
]
