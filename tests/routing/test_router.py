"""The router's order of backends: priorities, weights, bursts past a busy local queue, open circuits."""

from __future__ import annotations

import random
from collections import Counter

from prometheus_client import CollectorRegistry

from stratum.errors import ModelNotFound
from stratum.routing.metrics import RoutingMetrics
from stratum.routing.router import Plan, Router
from stratum.routing.schemas import Route


class Engine:
    def __init__(self, depth: int = 0) -> None:
        self.queue_depth = depth


class Routes:
    def find(self, model: str) -> None:
        return None


def _router(**kwargs: object) -> Router:
    options = {"burst_queue": 2, "circuit_failures": 2, "circuit_open_s": 60.0, **kwargs}
    return Router(Routes(), RoutingMetrics(CollectorRegistry()), rng=random.Random(7), **options)  # type: ignore[arg-type]


def _plan(**route: object) -> Plan:
    return Plan(route=Route.model_validate({"model": "assistant", **route}), implicit=False)


async def _order(router: Router, plan: Plan, engines: dict[str, Engine]) -> list[tuple[str, bool]]:
    async def engine_of(ref: str):  # type: ignore[no-untyped-def]
        if ref not in engines:
            raise ModelNotFound(f"no model {ref}")
        return f"{ref}@1", engines[ref]

    return [(c.ref, c.burst) async for c in router.candidates(plan, engine_of)]


BACKENDS = [{"model": "local"}, {"model": "cloud", "priority": 1}]


async def test_local_first_then_burst_while_its_queue_is_long_then_back() -> None:
    router = _router()
    engines = {"local": Engine(depth=0), "cloud": Engine()}
    plan = _plan(backends=BACKENDS)
    assert await _order(router, plan, engines) == [("local@1", False), ("cloud@1", False)]
    engines["local"].queue_depth = 3  # longer than burst_queue=2
    # The busy local engine is kept as a last resort after the burst target.
    assert await _order(router, plan, engines) == [("cloud@1", True), ("local@1", False)]
    engines["local"].queue_depth = 2  # drained to the threshold: local again
    assert (await _order(router, plan, engines))[0] == ("local@1", False)


async def test_route_burst_queue_overrides_the_default_and_last_priority_never_bursts() -> None:
    router = _router()
    engines = {"local": Engine(depth=1), "cloud": Engine(depth=50)}
    assert (await _order(router, _plan(backends=BACKENDS, burst_queue=0), engines))[0] == ("cloud@1", True)
    only_local = _plan(backends=[{"model": "local"}], burst_queue=0)
    assert await _order(router, only_local, engines) == [("local@1", False)]


async def test_weights_split_traffic_within_a_priority() -> None:
    router = _router()
    engines = {"a": Engine(), "b": Engine()}
    plan = _plan(backends=[{"model": "a", "weight": 3}, {"model": "b", "weight": 1}])
    firsts = Counter([(await _order(router, plan, engines))[0][0] for _ in range(2000)])
    assert 0.70 < firsts["a@1"] / 2000 < 0.80


async def test_open_circuits_are_skipped_and_missing_backends_reported() -> None:
    router = _router()
    engines = {"local": Engine(), "cloud": Engine()}
    plan = _plan(backends=[*BACKENDS, {"model": "ghost", "priority": 2}])
    for _ in range(2):
        router.report("local@1", ok=False, trigger="error")
    assert router.breakers()["local@1"].state == "open"
    assert await _order(router, plan, engines) == [("cloud@1", False)]
    assert len(plan.errors) == 1 and plan.errors[0].code == "model_not_found"


class Checked(Engine):
    def __init__(self) -> None:
        super().__init__()
        self.ok = False

    async def check_health(self) -> bool:
        return self.ok


async def test_health_checks_open_circuits_and_let_a_recovered_backend_try_again() -> None:
    router = _router()
    engine = Checked()
    for _ in range(2):
        await router.check_health([("up@1", engine), ("local@1", Engine())])
    assert router.breakers()["up@1"].state == "open" and "local@1" not in router.breakers()
    engine.ok = True
    await router.check_health([("up@1", engine)])
    assert router.breakers()["up@1"].state == "half_open"
