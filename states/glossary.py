"""The product's words in one place: stage names, action words and the words it no longer uses.

Stage names are read from the template catalog (the YAML is the one source); this module only
adds the words pages, notices and API messages share, and the RETIRED words with their
replacement. `tests/test_glossary.py` scans the sources and rendered pages for retired words.
"""

from __future__ import annotations

from states.catalog import Stage, builtin_templates

#: What a run is called: 创建进度, or 进度 for short (never 进程, a computing word).
RUN = "创建进度"
RUN_SHORT = "进度"
#: The stage and survey in which the public rates a branch: one name everywhere.
APPRAISAL = "群众评议"

#: The action and record words, keyed by the identifier the code uses.
ACTIONS: dict[str, str] = {
    "request_advance": "申请推进",
    "reapply": "重新申请",
    "approve": "同意",
    "return": "退回",
    "withdraw": "撤回",
    "revoke": "撤销",
    "extension": "延期",
    "escalation": "督办",
    "reminder": "提醒",
    "public_notice": "通报",
    "bulletin": "简报",
    "ledger": "台账",
    "review": "点评",
    "appraisal": APPRAISAL,
}

#: What a stage owed above the branch waits for, by stage id; else by the record it needs.
OWED_BY_STAGE: dict[str, str] = {
    "review": "点评",
    "committee_rating": "考评",
    "commend": "表彰决定",
    "grading": "定级",
}
OWED_BY_EVIDENCE: dict[str, str] = {"review": "点评", "decision": "决定"}
#: Who holds a run: the branch, an approver, or the superior owing the stage.
HOLDER_BRANCH = "支部办理中"
HOLDER_APPROVER = "待{approver}审批"
HOLDER_ABOVE = "待上级{word}"
#: The overdue counts by holder.
OVERDUE_BY_HOLDER: dict[str, str] = {
    "branch": "支部逾期",
    "approver": "审批逾期",
    "above": "上级逾期",
}


def owed_word(stage: Stage) -> str:
    """The superior's action a stage owed above waits for (点评, 表彰决定, 定级, 决定 …)."""
    if stage.id in OWED_BY_STAGE:
        return OWED_BY_STAGE[stage.id]
    kind = next((k for k in stage.evidence if k in OWED_BY_EVIDENCE), None)
    return OWED_BY_EVIDENCE[kind] if kind else "办理"


#: Retired word -> the word to use instead.
RETIRED: dict[str, str] = {
    "进程": RUN_SHORT,
    "群众测评": APPRAISAL,
    "测评": APPRAISAL,
}

#: Phrases in which a retired word means something else and stays (the phrase, then why).
ALLOWED: dict[str, str] = {
    "定时任务进程": "an operating-system process: the CLI's worker output",
    "未知进程": "an operating-system process holding the Prefect server's data directory",
    "服务进程": "an operating-system process: `dangjian serve --workers N` starts N of them",
}


def stage_names() -> dict[str, dict[str, str]]:
    """Return {template key: {stage id: stage name}} as the shipped templates define them."""
    return {
        key: {stage.id: stage.name for stage in tpl.stages}
        for key, tpl in builtin_templates().items()
    }


def retired_in(text: str) -> list[str]:
    """Return the retired words `text` uses, ignoring the allowed phrases."""
    for phrase in ALLOWED:
        text = text.replace(phrase, "")
    return [word for word in RETIRED if word in text]
