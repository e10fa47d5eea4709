"""Evidence: records an organisation keeps once and links to any number of (run, stage) uses.

* `validation`  – the typed contents of each kind (`SCHEMAS`, `validate_evidence`)
* `hashing`     – the SHA-256 of a record's canonical contents (carried by its audit events)
* `records`     – record one or a batch, link and unlink (`record`, `record_batch`, `link`, …)
* `corrections` – void with a reason, amend (the old contents kept as a revision)
* `queries`     – one record with its revisions and links; reusable records for a stage
"""

from __future__ import annotations

from states.evidence.validation import (
    SCHEMAS,
    ActivityIn,
    AppraisalIn,
    CommitmentIn,
    DecisionIn,
    DocumentIn,
    MeetingIn,
    ReviewIn,
    SelfAssessmentIn,
    validate_evidence,
)

__all__ = [
    "SCHEMAS",
    "ActivityIn",
    "AppraisalIn",
    "CommitmentIn",
    "DecisionIn",
    "DocumentIn",
    "MeetingIn",
    "ReviewIn",
    "SelfAssessmentIn",
    "validate_evidence",
]
