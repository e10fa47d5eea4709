"""The product's words in one place: stage names, action words and the words it no longer uses.

Stage names are read from the template catalog (the YAML is the one source); this module only
adds the words pages, notices and API messages share, and the RETIRED words with their
replacement. `tests/test_glossary.py` scans the sources and rendered pages for retired words.
"""

from __future__ import annotations

from states.catalog import builtin_templates

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
