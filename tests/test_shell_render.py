"""The shell's terminal rendering of the core's Slack markup, and its wrapping. Pure."""

from __future__ import annotations

from prompt_toolkit.utils import get_cwidth

from bot.transports.shell_render import for_terminal, render_line, wrap


def text_of(fragments: list[tuple[str, str]]) -> str:
    return "".join(text for _, text in fragments)


def lines_of(text: str, width: int) -> list[str]:
    return text_of(for_terminal(text, width)).split("\n")


def test_bold_code_italic_and_strike_lose_their_marks() -> None:
    assert render_line("» *Locks*") == [("", "» "), ("bold", "Locks")]
    assert render_line("`znyx:*:prod` locked") == [("class:code", "znyx:*:prod"), ("", " locked")]
    assert render_line("_soon_ and ~gone~") == [
        ("italic", "soon"),
        ("", " and "),
        ("strike", "gone"),
    ]
    assert render_line("*bold _and italic_*") == [("bold", "bold "), ("bold italic", "and italic")]
    assert render_line("*Next freeze*: none") == [("bold", "Next freeze"), ("", ": none")]


def test_what_only_looks_like_markup_stays_as_typed() -> None:
    for line in (
        "/promote lock znyx:*:prod incident 4521",  # a pattern, not bold
        "apbu_ios151 and U_ALICE",  # ids with underscores, not italic
        "2 * 3 * 4",
        "a*b*c",
        "** nothing",
    ):
        assert render_line(line) == [("", line)], line


def test_nothing_inside_code_is_markup() -> None:
    assert render_line("`*not bold* <https://x.y|no link>`") == [
        ("class:code", "*not bold* <https://x.y|no link>")
    ]
    assert render_line("*in bold: `code`*") == [("bold", "in bold: "), ("bold class:code", "code")]


def test_links_are_text_with_their_address_and_people_are_named() -> None:
    assert text_of(render_line("see <https://status.example/1|the incident>.")) == (
        "see the incident (https://status.example/1)."
    )
    assert text_of(render_line("<https://example.com/a>")) == "https://example.com/a"
    assert text_of(render_line("<mailto:rm@example.com|rm@example.com>")) == "rm@example.com"
    assert text_of(render_line("<@U1> <@U2|bob> <!subteam^S1> <!here> <#C1|releases>")) == (
        "@U1 @bob group S1 @here #releases"
    )
    assert text_of(render_line("a &lt;b&gt; &amp; c <not a link>")) == "a <b> & c <not a link>"


def test_a_code_block_keeps_its_lines_and_loses_its_fences() -> None:
    text = "```\nline *one*\n    indented\n``` then *bold*"
    out = for_terminal(text, 10)
    assert text_of(out) == "\nline *one*\n    indented\n then bold"
    assert ("class:code", "    indented") in out


def test_a_long_line_wraps_under_its_own_prefix() -> None:
    reply = "» " + " ".join(f"word{n}" for n in range(30))
    lines = lines_of(reply, 40)
    assert len(lines) > 3
    assert all(line.startswith("» word") for line in lines)
    assert all(get_cwidth(line) <= 40 for line in lines)
    assert " ".join(line[2:] for line in lines) == reply[2:]  # no word lost or split

    bullet = lines_of("» • 🔒 `znyx:*:prod` locked by @U_ALICE since 2024-05-01: " + "x " * 30, 40)
    assert bullet[0].startswith("» • 🔒 znyx:*:prod")
    assert all(line.startswith("»   ") for line in bullet[1:])

    frame = lines_of("┌ #1 Promote " + "a " * 40 + "\n│ Target " + "b " * 40, 30)
    assert frame[0].startswith("┌ #1 Promote")
    assert all(line.startswith("│ ") for line in frame[1:])

    thread = lines_of("  ↳ #1 ✅ Promoted: " + "c " * 40, 30)
    assert all(line.startswith("    c") for line in thread[1:])


def test_a_word_wider_than_the_room_stays_whole() -> None:
    url = "https://example.com/" + "a" * 60
    lines = lines_of(f"» see {url} now", 40)
    assert lines == ["» see", f"» {url}", "» now"]


def test_a_line_that_fits_is_left_as_it_is() -> None:
    line = "approve <request>   click Approve          reject <request>   click Reject"
    assert lines_of(line, 100) == [line]  # the help's columns keep their spaces
    assert wrap([("", "» short")], 80) == [[("class:marker", "»"), ("", " short")]]
