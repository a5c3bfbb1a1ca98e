"""Extraction per format and structure-aware chunking, Chinese first."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from stratum.errors import InvalidRequest
from stratum.knowledge.chunking import chunk_blocks
from stratum.knowledge.extract import Block, extract, iter_files
from stratum.knowledge.text import count_tokens, lexical_tokens, split_sentences
from tests.knowledge.conftest import CORPUS


def test_token_count_and_sentences_in_chinese_and_english() -> None:
    assert count_tokens("知识库支持 PDF 文件") == 5 + 1 + 2
    assert split_sentences("第一句。第二句！第三句？第四句；end. Next one") == [
        "第一句。",
        "第二句！",
        "第三句？",
        "第四句；",
        "end.",
        " Next one",
    ]
    tokens = lexical_tokens("青石市图书馆的借阅规则 Rate limits")
    assert "图书馆" in tokens and "借阅" in tokens and "rate" in tokens and "的" not in tokens


def test_headings_paragraphs_and_overlap() -> None:
    long_paragraph = "".join(f"第{i}句话讲的是知识库的分块规则。" for i in range(30))
    blocks = [
        Block("heading", "第一章 总则", level=1),
        Block("text", "短段落一。"),
        Block("heading", "1.1 范围", level=2),
        Block("text", long_paragraph),
        Block("heading", "第二章 附则", level=1),
        Block("text", "最后一段。"),
    ]
    chunks = chunk_blocks(blocks, size=40, overlap=15)
    assert chunks[0].text == "短段落一。" and chunks[0].heading_path == ["第一章 总则"]
    middle = [c for c in chunks if c.heading_path == ["第一章 总则", "1.1 范围"]]
    assert len(middle) > 3 and all(count_tokens(c.text) <= 40 for c in middle)
    # Sentence ends are respected and neighbours share their overlap sentence.
    assert all(c.text.endswith("。") for c in middle)
    first_last_sentence = split_sentences(middle[0].text)[-1]
    assert middle[1].text.startswith(first_last_sentence)
    assert chunks[-1].heading_path == ["第二章 附则"] and chunks[-1].text == "最后一段。"
    # Every sentence of the long paragraph is in some chunk: nothing lost at boundaries.
    joined = "".join(c.text for c in middle)
    assert all(f"第{i}句话" in joined for i in range(30))


def test_tables_stay_whole_or_split_by_rows_with_header() -> None:
    small = Block("table", "线路 | 时间\n一号线 | 07:40")
    chunks = chunk_blocks([Block("text", "前文。"), small, Block("text", "后文。")], size=50, overlap=5)
    assert [c.kind for c in chunks] == ["text", "table", "text"] and chunks[1].text == small.text
    rows = "\n".join(f"第{i}班 | 07:{i:02d} | 科技园" for i in range(40))
    big = chunk_blocks([Block("table", "班次 | 时间 | 终点\n" + rows)], size=60, overlap=5)
    assert len(big) > 1 and all(c.text.startswith("班次 | 时间 | 终点") for c in big)
    assert all(count_tokens(c.text) <= 60 for c in big)


def test_a_sentence_longer_than_a_chunk_is_cut() -> None:
    chunks = chunk_blocks([Block("text", "字" * 250)], size=100, overlap=0)
    assert [len(c.text) for c in chunks] == [100, 100, 50]


def test_a_new_page_starts_a_new_chunk() -> None:
    blocks = [
        Block("text", "第一页第一段。", page=1),
        Block("text", "第一页第二段，这句话跨页", page=1),
        Block("text", "继续到第二页。第二页的内容。", page=2),
        Block("text", "第二页末段。", page=2),
    ]
    chunks = chunk_blocks(blocks, size=200, overlap=20)
    assert [(c.page, c.text) for c in chunks] == [
        (1, "第一页第一段。\n第一页第二段，这句话跨页"),
        (2, "继续到第二页。第二页的内容。\n第二页末段。"),
    ]


def test_pdf_keeps_pages_and_numbered_headings() -> None:
    extracted = extract(CORPUS / "x1_manual.pdf", (CORPUS / "x1_manual.pdf").read_bytes())
    assert extracted.pages == 3
    headings = [(b.text, b.page) for b in extracted.blocks if b.kind == "heading"]
    assert headings[0] == ("1 产品概述", 1) and ("5 保修说明", 3) in headings
    rules = extract(CORPUS / "safety_rules.pdf", (CORPUS / "safety_rules.pdf").read_bytes())
    assert ("第一章 总则", 1) in [(b.text, b.page) for b in rules.blocks if b.kind == "heading"]


def test_markdown_html_docx_xlsx_csv(tmp_path: Path) -> None:
    import docx
    import openpyxl

    md = extract(
        Path("a.md"),
        "# 标题\n\n## 小节\n\n正文第一段，\n接着写。\n\n| a | b |\n|---|---|\n| 1 | 2 |\n".encode(),
    )
    assert [b.kind for b in md.blocks] == ["heading", "heading", "text", "table"]
    assert md.blocks[2].text == "正文第一段，接着写。" and md.blocks[3].text == "a | b\n1 | 2"

    html = "<html><body><nav>菜单 首页</nav><article><h1>龙井</h1><p>" + "西湖龙井产于杭州。" * 20
    html += "</p></article></body></html>"
    blocks = extract(Path("a.html"), html.encode()).blocks
    assert any(b.kind == "heading" and b.text == "龙井" for b in blocks)
    assert any("西湖龙井产于杭州" in b.text for b in blocks)

    document = docx.Document()
    document.add_heading("报销流程", level=1)
    document.add_paragraph("六十天内提交。")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "项目", "金额"
    table.cell(1, 0).text, table.cell(1, 1).text = "餐费", "120"
    buffer = io.BytesIO()
    document.save(buffer)
    blocks = extract(Path("a.docx"), buffer.getvalue()).blocks
    assert [(b.kind, b.text) for b in blocks] == [
        ("heading", "报销流程"),
        ("text", "六十天内提交。"),
        ("table", "项目 | 金额\n餐费 | 120"),
    ]

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "价目表"
    sheet.append(["商品", "价格"])
    sheet.append(["龙井", 680])
    path = tmp_path / "a.xlsx"
    workbook.save(path)
    blocks = extract(path, path.read_bytes()).blocks
    assert [(b.kind, b.text) for b in blocks] == [("heading", "价目表"), ("table", "商品 | 价格\n龙井 | 680")]

    gbk = "名称,数量\n苹果,3\n".encode("gb18030")
    assert extract(Path("a.csv"), gbk).blocks[0].text == "名称 | 数量\n苹果 | 3"


def test_unsupported_and_unreadable_files() -> None:
    with pytest.raises(InvalidRequest, match="unsupported"):
        extract(Path("a.exe"), b"")
    with pytest.raises(InvalidRequest, match="could not read"):
        extract(Path("a.pdf"), b"%PDF-garbage")


def test_scanned_pdf_without_tesseract_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reportlab.pdfgen import canvas

    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract on PATH, whatever the machine has
    pdf = tmp_path / "scan.pdf"
    page = canvas.Canvas(str(pdf))
    page.rect(50, 50, 100, 100)
    page.showPage()
    page.save()
    with pytest.raises(InvalidRequest, match="OCR is not installed") as raised:
        extract(pdf, pdf.read_bytes())
    assert raised.value.code == "ocr_not_installed"


def test_folders_are_walked_with_relative_sources(tmp_path: Path) -> None:
    (tmp_path / "子目录").mkdir()
    (tmp_path / "子目录" / "说明.md").write_text("# 说明", encoding="utf-8")
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\0")
    assert [s for _, s in iter_files([tmp_path])] == ["a.txt", "子目录/说明.md"]


def test_every_eval_answer_is_in_its_source() -> None:
    questions = [
        json.loads(line) for line in (CORPUS / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(questions) >= 50
    for q in questions:
        path = CORPUS / q["expected_source"]
        text = "".join(b.text for b in extract(path, path.read_bytes()).blocks).replace(" ", "")
        for answer in q["answers"]:
            assert answer.replace(" ", "") in text, (q["question"], answer)
