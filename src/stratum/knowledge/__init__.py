"""Knowledge: the platform's grounded answering modes (knowledge bases, database QA in ``sql``)."""
