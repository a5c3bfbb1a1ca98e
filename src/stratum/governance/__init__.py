"""Governance: tenants (orgs, projects), API keys, policy, quotas and usage."""

from stratum.governance.counters import Claim, CounterStore, MemoryCounters, StoreCounters
from stratum.governance.policy import Check, Decision, PolicyRule
from stratum.governance.quotas import QuotaService, Reservation
from stratum.governance.redis_counters import RedisCounterStore
from stratum.governance.rules import PolicyService
from stratum.governance.schemas import ApiKeyPublic, Limits, Principal, Tenant
from stratum.governance.service import KeyService
from stratum.governance.tenancy import TenancyService
from stratum.governance.usage import UsageEntry, UsageService

__all__ = [
    "ApiKeyPublic",
    "Check",
    "Claim",
    "CounterStore",
    "Decision",
    "KeyService",
    "Limits",
    "MemoryCounters",
    "PolicyRule",
    "PolicyService",
    "Principal",
    "QuotaService",
    "RedisCounterStore",
    "Reservation",
    "StoreCounters",
    "TenancyService",
    "Tenant",
    "UsageEntry",
    "UsageService",
]
