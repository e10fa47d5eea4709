"""One shared `transitions` Machine per template version; a light model per call.

Guards live in `conditions` (never in callbacks: a raising callback does not roll the state
back); the database transaction is the only commit point. `auto_transitions` is off, so no
`to_<state>()` can skip a guard, and triggers are always fired by name through `trigger()`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast

from transitions import EventData, Machine

from states.catalog import DONE, DONE_LABEL, Stage, Template
from states.errors import Conflict
from states.requirements import RequirementStatus, RunFacts, evaluate

ADVANCE = "advance"
RETURN_PREFIX = "return_to_"


class RunModel:
    """The light per-call model: a state, the facts the guards read, and what they found."""

    def __init__(self, facts: RunFacts | None) -> None:
        self.facts = facts
        self.unmet: list[RequirementStatus] = []
        self.state: str = ""
        # No methods here: `fire` runs the machine's events on this plain object.


def _guard(stage: Stage) -> Any:
    def requirements_met(event: EventData) -> bool:
        model = cast(RunModel, event.model)
        if model.facts is None:
            raise RuntimeError("guard evaluated without facts")
        model.unmet = [s for s in evaluate(stage, model.facts) if not s.met]
        return not model.unmet

    requirements_met.__name__ = f"requirements_met_{stage.id}"
    return requirements_met


def build_machine(tpl: Template) -> Machine:
    """Build the Machine of one template version (no models attached)."""
    ids = tpl.stage_ids
    transitions: list[dict[str, Any]] = []
    for i, stage in enumerate(tpl.stages):
        dest = ids[i + 1] if i + 1 < len(ids) else DONE
        transitions.append(
            {"trigger": ADVANCE, "source": stage.id, "dest": dest, "conditions": [_guard(stage)]}
        )
        for earlier in ids[:i]:
            transitions.append(
                {"trigger": RETURN_PREFIX + earlier, "source": stage.id, "dest": earlier}
            )
    return Machine(
        model=None,
        states=[*ids, DONE],
        transitions=transitions,
        initial=ids[0],
        auto_transitions=False,
        send_event=True,
    )


_cache: dict[tuple[str, int, str], Machine] = {}
_lock = threading.Lock()


def machine_for(tpl: Template) -> Machine:
    """Return the shared Machine for this template version, building it once."""
    key = (tpl.key, tpl.version, tpl.digest())
    machine = _cache.get(key)
    if machine is None:
        with _lock:
            machine = _cache.setdefault(key, build_machine(tpl))
    return machine


@dataclass
class Outcome:
    """The result of firing a trigger: the new state, or the unmet requirements."""

    state: str
    moved: bool
    unmet: list[RequirementStatus] = field(default_factory=list)


def allowed_triggers(tpl: Template, state: str) -> list[str]:
    """Return the trigger names legal from `state`, advance first."""
    return sorted(machine_for(tpl).get_triggers(state), key=lambda t: (t != ADVANCE, t))


def fire(tpl: Template, state: str, trigger: str, facts: RunFacts | None = None) -> Outcome:
    """Fire `trigger` on a model in `state`; raise Conflict if illegal; return the outcome."""
    machine = machine_for(tpl)
    if trigger not in machine.get_triggers(state):
        raise Conflict(
            f"当前阶段「{stage_label(tpl, state)}」不能执行「{trigger_label(tpl, trigger)}」",
            details={"stage": state, "action": trigger},
        )
    model = RunModel(facts)
    model.state = state
    # The event fires on the model directly: nothing is bound to it and the shared machine's
    # model list is never touched (add_model binds every trigger of the template per call).
    moved = machine.events[trigger].trigger(model)
    return Outcome(model.state, bool(moved), list(model.unmet))


def stage_label(tpl: Template, state: str) -> str:
    return DONE_LABEL if state == DONE else tpl.stage(state).name


def trigger_label(tpl: Template, trigger: str) -> str:
    if trigger == ADVANCE:
        return "推进到下一阶段"
    if trigger.startswith(RETURN_PREFIX):
        target = trigger[len(RETURN_PREFIX) :]
        known = target in tpl.stage_ids
        return f"退回到「{tpl.stage(target).name}」" if known else f"退回到「{target}」"
    return trigger


def mermaid(tpl: Template) -> str:
    """Return a Mermaid stateDiagram-v2 of the template (stages and advance arrows)."""
    lines = ["stateDiagram-v2", f"    [*] --> {tpl.stage_ids[0]}"]
    for s in tpl.stages:
        lines.append(f"    {s.id}: {s.name}")
    for i, s in enumerate(tpl.stages):
        nxt = tpl.stage_ids[i + 1] if i + 1 < len(tpl.stages) else DONE
        lines.append(f"    {s.id} --> {nxt}: 审批通过")
    lines.append(f"    {DONE}: {DONE_LABEL}")
    lines.append(f"    {DONE} --> [*]")
    return "\n".join(lines)
