"""Render the scanned-document fixtures of ``tests/knowledge/corpus_ocr`` (run once; the output is
committed, so the tests need no CJK font): text drawn into images with no text layer — a PNG and a
two-page image-only PDF, as a scanner would produce them.

    python scripts/make_ocr_fixtures.py /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

Any font with CJK glyphs works (Debian: ``fonts-wqy-microhei``). The text is self-written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent.parent / "tests/knowledge/corpus_ocr"

IMAGE_TEXT = [
    "会议室预订须知",
    "大会议室可容纳三十人，需提前两天在行政系统中预订。",
    "小会议室每次最多预订两个小时，取消请提前一小时。",
]
PDF_PAGES = [
    [
        "档案室管理规定",
        "一、档案室位于行政楼三层，周一至周五上午九点至下午五点开放。",
        "二、借阅纸质档案须填写借阅登记表，借阅期限不超过十个工作日。",
    ],
    [
        "三、涉密档案只能在档案室内查阅，不得复印或拍照。",
        "四、逾期未归还的档案，由档案管理员每周通报一次。",
    ],
]


def page(lines: list[str], font: ImageFont.FreeTypeFont, width: int = 1700) -> Image.Image:
    height = 160 + 90 * len(lines)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((80, 80 + 90 * i), line, font=font, fill=0)
    return image


def main() -> None:
    font = ImageFont.truetype(sys.argv[1], 48)
    OUT.mkdir(parents=True, exist_ok=True)
    page(IMAGE_TEXT, font).save(OUT / "会议室须知.png", optimize=True)
    first, *rest = [page(lines, font).convert("1") for lines in PDF_PAGES]
    first.save(OUT / "档案室扫描件.pdf", save_all=True, append_images=rest, resolution=200)


if __name__ == "__main__":
    main()
