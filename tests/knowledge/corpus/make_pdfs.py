"""Regenerate the corpus PDFs (self-written text) with reportlab's built-in CID font STSong-Light.

Run: ``python tests/knowledge/corpus/make_pdfs.py`` (the machine has no CJK TrueType font; the CID
font needs none). The PDFs are committed so that tests do not depend on reportlab.
"""

from __future__ import annotations

from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

HERE = Path(__file__).parent
MANUAL = [
    [
        "1 产品概述",
        "X1 智能音箱是青石科技推出的家用语音助手。",
        "它内置六个麦克风组成的阵列，可以在五米范围内识别语音指令。",
        "音箱支持蓝牙 5.3 和双频 Wi-Fi 连接。",
        "2 首次设置",
        "首次使用时，长按顶部的圆形按键三秒，指示灯变为橙色后进入配网模式。",
        "打开“青石家居”应用，按照提示将音箱连接到家庭网络。",
    ],
    [
        "3 电池与充电",
        "X1 内置五千毫安时电池，充满电需要约两个半小时。",
        "充满电后在中等音量下可以连续播放音乐十二个小时。",
        "请使用原装的 20 瓦 USB-C 充电器，避免在高温环境中充电。",
        "4 恢复出厂设置",
        "同时按住音量加键和静音键十秒，指示灯闪烁红色三次后，音箱将恢复出厂设置。",
        "恢复出厂设置会清除所有账号和网络信息。",
    ],
    [
        "5 保修说明",
        "X1 智能音箱自购买之日起享受两年免费保修。",
        "人为损坏、进水和私自拆机不在保修范围之内。",
        "维修服务请拨打客服热线 400-820-1234，服务时间为每天八点至二十点。",
    ],
]
SAFETY = [
    [
        "第一章 总则",
        "为了保障员工在生产车间内的人身安全，制定本规程。",
        "所有进入车间的人员必须佩戴安全帽和防护眼镜，穿着防砸安全鞋。",
        "第二章 设备操作",
        "操作冲压设备的员工必须持有特种作业操作证。",
        "设备运行期间严禁将手伸入模具区域，维修前必须切断电源并挂上“禁止合闸”警示牌。",
    ],
    [
        "第三章 消防安全",
        "车间内严禁吸烟，每个区域配备两个八公斤干粉灭火器，并每月检查一次压力表。",
        "消防通道宽度不得小于一点五米，任何时候不得堆放物品。",
        "第四章 事故报告",
        "发生工伤事故后，现场负责人必须在一小时内向安全环保部报告，",
        "并在二十四小时内提交书面事故报告。",
    ],
]


def write(path: Path, pages: list[list[str]], title: str) -> None:
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    pdf.setTitle(title)
    for lines in pages:
        y = 800
        for line in lines:
            pdf.setFont("STSong-Light", 12)
            pdf.drawString(60, y, line)
            y -= 24
        pdf.showPage()
    pdf.save()


if __name__ == "__main__":
    write(HERE / "x1_manual.pdf", MANUAL, "X1 智能音箱使用手册")
    write(HERE / "safety_rules.pdf", SAFETY, "车间安全生产规程")
