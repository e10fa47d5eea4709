"""Templates as data: the shipped ones load; bad ones fail naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from states.catalog import DONE, builtin_templates, get_template, load_file
from states.errors import InvalidInput, NotFound


def test_three_templates_ship() -> None:
    tpls = builtin_templates()
    assert set(tpls) == {"chuangxian_zhengyou", "sqsy_fuwuxing", "jinwei_shengji"}
    assert [s.name for s in tpls["chuangxian_zhengyou"].stages] == [
        "宣传发动",
        "公开承诺",
        "全面争创",
        "领导点评",
        "群众评议",
        "评选表彰",
    ]
    sqsy = tpls["sqsy_fuwuxing"]
    assert len(sqsy.stages) == 6 and all(s.phase for s in sqsy.stages)
    assert sqsy.stage("consolidate").phase.closes == "12-25"  # type: ignore[union-attr]
    assert tpls["jinwei_shengji"].grades == ["好", "较好", "一般", "差"]


def test_next_stage_and_chain() -> None:
    tpl = get_template("chuangxian_zhengyou")
    assert tpl.next_stage("mobilize") == "pledge"
    assert tpl.next_stage("commend") == DONE
    assert [s.parent or s.nearest_kind for s in tpl.chain_for("commend")] == [1, "党委"]
    assert [s.parent for s in tpl.chain_for("pledge")] == [1]


def test_unknown_template() -> None:
    with pytest.raises(NotFound, match="没有这个模板"):
        get_template("nope")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD_HEAD = """
key: t1
version: 1
name: 测试
approval: {default: [{parent: 1}]}
"""


def test_error_names_file_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        GOOD_HEAD + "stages:\n  - {id: s1, name: 一, evidence: [meeting], requirements: "
        "[{type: evidence_count, kind: meeting, min: 0, label: 会}]}\n",
    )
    with pytest.raises(InvalidInput) as err:
        load_file(path)
    assert err.value.details[0]["file"] == "bad.yaml"
    assert err.value.details[0]["key"].startswith("stages.0.requirements.0")
    assert "min" in err.value.details[0]["key"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("stages:\n  - {id: S1, name: 一}\n", "阶段 id 不合法"),
        ("stages:\n  - {id: a, name: 一}\n  - {id: a, name: 二}\n", "阶段 id 重复"),
        (
            "stages:\n  - {id: a, name: 一, requirements: [{type: review_present}]}\n",
            "evidence 未列出",
        ),
        ("stages:\n  - {id: a, name: 一, evidence: [photo]}\n", "未知的材料类型"),
        ("stages:\n  - {id: a, name: 一}\nsurprise: 1\n", "surprise"),
    ],
)
def test_bad_templates_refused(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        load_file(_write(tmp_path, GOOD_HEAD + body))


def test_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"bad\.yaml"):
        load_file(_write(tmp_path, "key: [unclosed"))
