"""``stratum chat``: talk to a model on a running gateway, replies typed out as they stream in."""

from __future__ import annotations

import sys
from contextlib import closing, suppress
from typing import TYPE_CHECKING, Annotated

import typer

from stratum.cli.output import CliError, print_error, print_note
from stratum.settings import Settings

if TYPE_CHECKING:
    from stratum.cli.chat_stream import ChatClient, ChatOptions

_HELP_LINE = "/exit or Ctrl-D quits, Ctrl-C stops a reply, /clear forgets the conversation"
_EXIT_COMMANDS = {"/exit", "/quit", "/bye"}


def default_base_url(settings: Settings) -> str:
    """The gateway's /v1 URL as a client on this machine reaches it."""
    host = settings.host
    # A server bound to every interface is reached through loopback.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"http://{host}:{settings.port}/v1"


def _write(text: str) -> None:
    # sys.stdout is looked up on every call so CliRunner's capture (and redirections) are honoured.
    sys.stdout.write(text)
    sys.stdout.flush()


class Conversation:
    """The message history sent with every turn, so the model sees the whole conversation."""

    def __init__(self, system: str | None) -> None:
        self.system = system
        self.messages: list[dict[str, str]] = []
        self.interrupted = False  # whether Ctrl-C stopped the last reply
        self.clear()

    def clear(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def ask(self, client: ChatClient, options: ChatOptions, text: str) -> str:
        """Send ``text``, type the reply out as it streams, and keep both in the history.

        Ctrl-C stops the reply: what was already shown stays in the history (the user saw it),
        and a turn that produced nothing is dropped. A failed request leaves the history unchanged
        and propagates ``ChatError``.
        """
        self.messages.append({"role": "user", "content": text})
        parts: list[str] = []
        self.interrupted = False
        try:
            with closing(client.stream(self.messages, options)) as deltas:
                for delta in deltas:
                    _write(delta)
                    parts.append(delta)
        except KeyboardInterrupt:
            self.interrupted = True
            _write("\n")
            print_note("[reply stopped]")
        except BaseException:
            if parts:  # end the half-written line so the error starts on its own
                _write("\n")
            self.messages.pop()
            raise
        else:
            _write("\n")
            if client.finish_reason == "length":
                print_note("[reply cut: token limit reached]")
        reply = "".join(parts)
        if reply:
            self.messages.append({"role": "assistant", "content": reply})
        else:
            self.messages.pop()
        return reply


def _repl(client: ChatClient, options: ChatOptions, conversation: Conversation) -> None:
    from stratum.cli.chat_stream import ChatError

    interactive = sys.stdin.isatty()
    if interactive:
        with suppress(ImportError):  # not available on every platform
            import readline  # noqa: F401  (line editing and history for input())
        print_note(f"chatting with {options.model} at {client.base_url} — {_HELP_LINE}")
    prompt = ">>> " if interactive else ""
    while True:
        try:
            line = input(prompt).strip()
        except EOFError:
            if interactive:
                _write("\n")
            return
        except KeyboardInterrupt:
            _write("\n")
            print_note(_HELP_LINE)
            continue
        if not line:
            continue
        if line in _EXIT_COMMANDS:
            return
        if line == "/clear":
            conversation.clear()
            print_note("[conversation cleared]")
            continue
        if line in ("/help", "/?"):
            print_note(_HELP_LINE)
            continue
        try:
            conversation.ask(client, options, line)
        except ChatError as exc:
            if exc.fatal:
                raise
            print_error(exc.message)  # e.g. the conversation outgrew the context: keep the session


def chat(
    model: Annotated[str, typer.Argument(help="Model name or alias, as in `stratum models list`.")],
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="OpenAI-compatible API root (default http://HOST:PORT/v1)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=["STRATUM_API_KEY", "OPENAI_API_KEY"],
            show_envvar=True,
            help="API key sent as a Bearer token.",
        ),
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", help="System prompt for the conversation.")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", min=0.0, max=2.0, help="Sampling temperature.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Longest reply, in tokens.")
    ] = None,
    message: Annotated[
        str | None,
        typer.Option(
            "--message",
            "-m",
            help="Send this one message, print the streamed reply and exit ('-' reads it from stdin).",
        ),
    ] = None,
) -> None:
    """Chat with a model on the running gateway (or any OpenAI-compatible server).

    Replies stream in token by token and the conversation is kept between turns.
    Type /exit or press Ctrl-D to quit; Ctrl-C stops the reply being written.
    """
    # Imported here: httpx costs a noticeable share of `stratum --help` start-up.
    from stratum.cli.chat_stream import ChatClient, ChatOptions

    settings = Settings()
    options = ChatOptions(model=model, temperature=temperature, max_tokens=max_tokens)
    conversation = Conversation(system)
    url = base_url or default_base_url(settings)
    with ChatClient(url, api_key, timeout=settings.request_timeout) as client:
        if message is None:
            _repl(client, options, conversation)
            return
        text = sys.stdin.read() if message == "-" else message
        if not text.strip():
            raise CliError("the message is empty")
        conversation.ask(client, options, text)
        if conversation.interrupted:
            raise typer.Exit(130)  # the shell's code for "stopped by Ctrl-C"
