"""What the run workbook says about records: each kind's contents in one line, and labels."""

from __future__ import annotations

from typing import Any

KIND_LABELS = {
    "meeting": "会议",
    "commitment": "承诺",
    "activity": "活动",
    "review": "点评",
    "appraisal": "群众评议",
    "decision": "评定",
    "document": "文件",
    "self_assessment": "自评",
}
OUTCOME_LABELS = {"approve": "同意", "approved": "同意", "return": "退回", "returned": "退回"}
ACTION_LABELS = {
    "evidence.recorded": "录入材料",
    "evidence.linked": "使用已有记录",
    "evidence.unlinked": "不再计入本阶段",
    "evidence.amended": "更正材料",
    "evidence.voided": "作废材料",
    "attachment.added": "上传附件",
    "request.submitted": "申请推进",
    "request.step_approved": "本级审批通过，转上一级审批",
    "stage.advanced": "审批通过，进入下一阶段",
    "request.returned": "退回申请",
    "request.withdrawn": "撤回申请",
    "extension.requested": "申请延期",
    "extension.granted": "批准延期",
    "run.sent_back": "上级退回",
}
#: Keys of an audit event's data shown as its detail, in this order.
DETAIL_KEYS = ("opinion", "reason", "comment", "filename", "new_deadline")


def summary(kind: str, data: dict[str, Any]) -> str:
    """A record's contents in one line of words."""
    d = data or {}
    if kind == "meeting":
        line = f"{d.get('date', '')} {d.get('title', '')}"
        if d.get("expected") is not None:
            line += f"，应到 {d.get('expected')} 人，实到 {d.get('present')} 人"
        return line + (f"。{d['notes']}" if d.get("notes") else "")
    if kind == "commitment":
        return str(d.get("text", ""))
    if kind == "activity":
        line = f"【{d.get('heading', '')}】{d.get('date', '')} {d.get('title', '')}"
        return line + (f"：{d['description']}" if d.get("description") else "")
    if kind == "review":
        return _review(d)
    if kind == "appraisal":
        return str(d.get("rating", "")) + (f"：{d['comment']}" if d.get("comment") else "")
    return _other(d)


def _review(d: dict[str, Any]) -> str:
    line = f"成绩：{d.get('achievements', '')}；问题：{d.get('problems', '')}；"
    line += f"方向：{d.get('direction', '')}"
    return line + (f"；等次：{d['grade']}" if d.get("grade") else "")


def _other(d: dict[str, Any]) -> str:
    labels = {
        "grade": "等次",
        "commendation": "表彰",
        "category": "类别",
        "title": "标题",
        "summary": "摘要",
        "text": "说明",
    }
    parts = [f"{label}：{d[key]}" for key, label in labels.items() if d.get(key)]
    return "；".join(parts)


def detail(data: dict[str, Any]) -> str:
    """An audit event's comment, opinion or reason."""
    d = data or {}
    return "；".join(str(d[k]) for k in DETAIL_KEYS if d.get(k))
