"""What the shell prints on a terminal: the core's Slack markup rendered, wrapped to the width.

The core writes every text in Slack's small markup (`*bold*`, `` `code` ``, `<url|label>`,
`<@U1>`). Piped, the shell prints it as it is (scripts and transcripts read it); on a terminal
this module turns it into styled text: bold, italic, struck, code in colour, a link as
`label (url)`, a person as `@U1`, and wraps each line to the terminal's width under its own
prefix (`» `, `│ `, `↳ `), so a long answer still reads as one block. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prompt_toolkit.formatted_text import FormattedText, StyleAndTextTuples
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth

STYLE = Style.from_dict(
    {
        "code": "fg:ansicyan",
        "link": "underline",
        "mention": "bold",
        "marker": "fg:ansibrightblack",  # the » │ ┌ └ ↳ that say what a line belongs to
        "prompt": "bold",
        "hint": "italic fg:ansibrightblack",
    }
)

_EMPHASIS = {"*": "bold", "_": "italic", "~": "strike"}
_OPEN_AFTER = " \t([{\"'“‘«*_~"  # an opening `*` must follow the start or one of these …
_CLOSE_BEFORE = " \t.,;:!?)]}\"'”’»…*_~"  # … and a closing one the end or one of these
_CODE = re.compile(r"`([^`\n]+)`")
_ANGLE = re.compile(r"<([^<>\s][^<>]*)>")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_LEAD = re.compile(r"^\s*(?:[»│┌└]\s*)?(?:[↳·•◦▪]\s*)?")
_GO_ON = {"»": "»", "│": "│", "┌": "│"}  # what a wrapped line's continuation starts with
_MARKERS = "»│┌└↳·"


@dataclass(frozen=True)
class _Atom:
    """Text that emphasis can surround but never reaches into: code, a link, a mention."""

    style: str
    text: str


_Item = str | _Atom  # one character of plain text, or an atom


def _unescape(text: str) -> str:
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    return text


def _angle(inner: str) -> list[_Atom] | None:
    """Slack's `<…>`: a person, a channel, a group, a special mention or a link."""
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return [_Atom("class:mention", "@" + (label or target[1:]))]
    if target.startswith("#"):
        return [_Atom("class:mention", "#" + (label or target[1:]))]
    if target.startswith("!subteam^"):
        return [_Atom("class:mention", label or f"group {target[len('!subteam^') :]}")]
    if target.startswith("!"):
        word = target[1:].split("^")[0]
        return [_Atom("class:mention", label or f"@{word}")]
    if not _SCHEME.match(target):
        return None
    url = _unescape(target)
    shown = _unescape(label).strip()
    if not shown or shown == url or f"mailto:{shown}" == url:
        return [_Atom("class:link", shown or url)]
    return [_Atom("", shown + " ("), _Atom("class:link", url), _Atom("", ")")]


def _items(line: str) -> list[_Item]:
    """A line as characters of plain text and atoms (code spans first: nothing inside them is
    markup, as in Slack)."""
    items: list[_Item] = []
    at = 0
    for code in _CODE.finditer(line):
        items += _text_items(line[at : code.start()])
        items.append(_Atom("class:code", _unescape(code.group(1))))
        at = code.end()
    return items + _text_items(line[at:])


def _text_items(text: str) -> list[_Item]:
    items: list[_Item] = []
    at = 0
    for angle in _ANGLE.finditer(text):
        atoms = _angle(angle.group(1))
        if atoms is None:
            continue
        items += _unescape(text[at : angle.start()])
        items += atoms
        at = angle.end()
    return items + list(_unescape(text[at:]))


def _char(items: list[_Item], i: int) -> str | None:
    """The character at `i` ("" for an atom, None past either end)."""
    if i < 0 or i >= len(items):
        return None
    item = items[i]
    return item if isinstance(item, str) else ""


def _opens(items: list[_Item], i: int) -> bool:
    before, after = _char(items, i - 1), _char(items, i + 1)
    return (before is None or before in _OPEN_AFTER) and after is not None and not after.isspace()


def _closes(items: list[_Item], i: int, start: int) -> bool:
    before, after = _char(items, i - 1), _char(items, i + 1)
    return (
        i > start + 1
        and before is not None
        and not before.isspace()
        and (after is None or after in _CLOSE_BEFORE)
    )


def render_line(line: str) -> StyleAndTextTuples:
    """One line of Slack markup as styled fragments (no wrapping)."""
    items = _items(line)
    active: list[str] = []  # the emphasis delimiters open here, in order
    closers: dict[int, str] = {}  # index of a delimiter that closes → the one it closes
    out: StyleAndTextTuples = []

    def style() -> str:
        return " ".join(_EMPHASIS[d] for d in active)

    for i, item in enumerate(items):
        if isinstance(item, _Atom):
            out.append((" ".join(s for s in (style(), item.style) if s), item.text))
            continue
        if i in closers:
            active.remove(closers.pop(i))
            continue
        if item in _EMPHASIS and item not in active and _opens(items, i):
            end = next(
                (j for j in range(i + 2, len(items)) if items[j] == item and _closes(items, j, i)),
                None,
            )
            if end is not None and end not in closers:
                active.append(item)
                closers[end] = item
                continue
        out.append((style(), item))
    return _merge(out)


def _merge(fragments: StyleAndTextTuples) -> StyleAndTextTuples:
    merged: StyleAndTextTuples = []
    for style, text in fragments:
        if merged and merged[-1][0] == style:
            merged[-1] = (style, merged[-1][1] + text)
        elif text:
            merged.append((style, text))
    return merged


def _width(fragments: StyleAndTextTuples) -> int:
    return sum(get_cwidth(text) for _, text in fragments)


def _split_lead(fragments: StyleAndTextTuples) -> tuple[str, StyleAndTextTuples]:
    """The line's prefix (`» • `, `│ `, `  ↳ `) as text, and the rest."""
    first_style, first = fragments[0] if fragments else ("", "")
    lead = _LEAD.match(first).group(0) if not first_style else ""
    rest = [(first_style, first[len(lead) :]), *fragments[1:]] if lead else fragments
    return lead, [f for f in rest if f[1]]


def _words(fragments: StyleAndTextTuples) -> list[tuple[str, StyleAndTextTuples]]:
    """(the spaces before it, the word) for each word; a word may span several styles."""
    words: list[tuple[str, StyleAndTextTuples]] = []
    space, word = "", []
    for style, text in fragments:
        for part in re.split(r"( +)", text):
            if not part:
                continue
            if part.startswith(" "):
                if word:
                    words.append((space, word))
                    word = []
                    space = ""
                space += part
            else:
                word.append((style, part))
    if word:
        words.append((space, word))
    return words


def _marked(lead: str) -> StyleAndTextTuples:
    """The prefix with its markers dimmed."""
    return [("class:marker" if c in _MARKERS else "", c) for c in lead] if lead else []


def wrap(fragments: StyleAndTextTuples, width: int) -> list[StyleAndTextTuples]:
    """One rendered line as lines of at most `width` columns, each continuation under the
    same prefix (`» ` stays `» `, a frame's `┌ ` goes on as `│ `, others as spaces). A word
    wider than the room left stays whole on its own line (a URL must stay clickable)."""
    lead, rest = _split_lead(fragments)
    if _width(fragments) <= width or width <= 0:
        return [_merge([*_marked(lead), *rest])]
    marker = next((c for c in lead if not c.isspace()), "")
    go_on = _GO_ON.get(marker, "")
    go_on = (lead[: lead.index(marker)] + go_on if go_on else "").ljust(get_cwidth(lead))
    room = max(width - get_cwidth(lead), 10)
    lines: list[StyleAndTextTuples] = []
    line: StyleAndTextTuples = []
    used = 0
    for space, word in _words(rest):
        size = _width(word)
        if line and used + len(space) + size > room:
            lines.append(line)
            line, used = [], 0
        if line:
            line.append(("", space))
            used += len(space)
        line += word
        used += size
    lines.append(line)
    return [_merge([*_marked(lead if n == 0 else go_on), *body]) for n, body in enumerate(lines)]


def for_terminal(text: str, width: int) -> FormattedText:
    """A text the shell prints, rendered and wrapped; lines inside a ``` block are kept as
    they are (code), not wrapped."""
    out: StyleAndTextTuples = []
    in_block = False
    for n, line in enumerate(text.split("\n")):
        if n:
            out.append(("", "\n"))
        fences = line.count("```")
        if in_block or fences:
            out += _block_line(line, in_block)
            in_block = in_block != (fences % 2 == 1)
            continue
        for m, part in enumerate(wrap(render_line(line), width)):
            if m:
                out.append(("", "\n"))
            out += part
    return FormattedText(out)


def _block_line(line: str, in_block: bool) -> StyleAndTextTuples:
    """A line that opens, closes or is inside a ``` block: the fences go, the code stays."""
    out: StyleAndTextTuples = []
    for k, part in enumerate(line.split("```")):
        inside = in_block != (k % 2 == 1)
        if part:
            out += [("class:code", _unescape(part))] if inside else render_line(part)
    return out
