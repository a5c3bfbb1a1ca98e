"""Content safety: PII detection and masking, sensitive words, a prompt-injection heuristic, and
the per-project policy that applies them in the request path (see ``service``)."""

from stratum.governance.guard.injection import InjectionScore, injection_score
from stratum.governance.guard.pii import PII_TYPES, Entity, find_pii, mask_pii
from stratum.governance.guard.policy import GuardPolicy, GuardPolicyUpdate, ScanResult
from stratum.governance.guard.service import CompiledGuard, Findings, GuardService
from stratum.governance.guard.stream import StreamMasker
from stratum.governance.guard.words import WordList

__all__ = [
    "PII_TYPES",
    "CompiledGuard",
    "Entity",
    "Findings",
    "GuardPolicy",
    "GuardPolicyUpdate",
    "GuardService",
    "InjectionScore",
    "ScanResult",
    "StreamMasker",
    "WordList",
    "find_pii",
    "injection_score",
    "mask_pii",
]
