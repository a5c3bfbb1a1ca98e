"""A loopback HTTP server with Chinese pages, for URL-ingest tests (no network needed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE = """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<title>青石市图书馆新规</title><link rel="canonical" href="https://news.example.cn/library/2024"></head>
<body><nav>首页 | 新闻 | 联系我们 | 网站地图</nav>
<article><h1>青石市图书馆延长开放时间</h1>
<p>自二零二四年三月起，青石市图书馆周末开放时间延长至晚上九点，读者可凭读者证进入自习区。</p>
<p>图书馆同时开放夜间还书箱，逾期归还的图书每天收取零点二元滞纳金，最高不超过图书定价。</p>
<p>少儿阅览室周一闭馆，其余时间与成人阅览室一致，节假日另行通知。</p>
</article><footer>版权所有 青石市文化局 备案号 0000</footer></body></html>"""
TEA = """<!doctype html><html><head><meta charset="utf-8"><title>龙井茶</title>
<meta property="og:url" content="https://tea.example.cn/longjing"></head><body><article>
<h1>龙井茶的冲泡方法</h1><p>龙井茶宜用八十度左右的水冲泡，水温过高会烫熟茶叶，使茶汤苦涩。</p>
<p>投茶量约为每一百毫升水两克茶叶，第一泡约一分钟即可出汤。</p></article></body></html>"""
PLAIN = "火锅底料的做法：牛油三斤，郫县豆瓣一斤，花椒二两，小火慢炒两个小时。\n"
PAGES: dict[str, tuple[str, bytes]] = {
    "/news/library.html": ("text/html; charset=utf-8", ARTICLE.encode()),
    "/tea": ("text/html; charset=utf-8", TEA.encode()),
    "/hotpot.txt": ("text/plain; charset=utf-8", PLAIN.encode()),
    "/logo.png": ("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64),
    "/big.html": ("text/html", b"<p>" + "大".encode() * 400_000 + b"</p>"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(3)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("location", "/tea")
            self.end_headers()
            return
        found = PAGES.get(self.path)
        if found is None:
            self.send_response(404)
            self.end_headers()
            return
        content_type, body = found
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@contextmanager
def serving() -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``) of a server running until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
