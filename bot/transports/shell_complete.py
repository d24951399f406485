"""Tab completion in the shell, read off the command's own usage lines.

Every form of `/promote …` (each provider's, and the core's verbs) and every shell verb has a
usage line such as `/promote znyx <project> activate <env> <version>`. What is typed is matched
against them word by word: a literal word is offered as it is, `a|b` as either, a
`<placeholder>` as the words it can be under the config as it is now (a provider's aliases and
stages, `ProviderRules.choices`; targets; people; request numbers, open ones first). The forms
other helpers add to a provider are completed the same way, with nothing to add here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from bot.core.commands import EMERGENCY, USAGE
from bot.core.model import Request, State
from bot.core.ports import Store, StoreError
from bot.core.rules import ProviderRules, Rules
from bot.core.timing import AT

SHELL_VERBS = (  # as the shell's help has them (shell.py)
    "approve <request> [<comment…>]",
    "reject <request> <reason…>",
    "cancel <request> [<reason…>]",
    "rollback <request>",
    "as <user>",
    "whoami",
    "help",
    "exit",
)
PROMOTE = ("/promote", "promote")
RECENT = 10  # request numbers offered besides the open ones, newest first

# Which requests a verb's <request> can sensibly be: those its button or command acts on.
OPEN = (State.PENDING, State.APPROVED)
_WANTED: dict[str, tuple[State, ...] | None] = {
    "approve": OPEN,
    "reject": OPEN,
    "cancel": OPEN,
    "rollback": (State.SUCCEEDED,),
    "status": None,  # any: the open ones first
}


@dataclass(frozen=True)
class Word:
    """One position of a usage line."""

    literals: tuple[str, ...] = ()  # `approve`, `exempt|non-exempt`
    placeholder: str | None = None  # `app` for `<app>`
    rest: bool = False  # `<reason…>`: every word from here on

    @classmethod
    def of(cls, token: str) -> Word:
        name = token[1:-1] if token.startswith("<") and token.endswith(">") else token
        if name.endswith("…"):  # `<reason…>`, `comment…`: free text
            return cls(placeholder=name.rstrip("…"), rest=True)
        if name != token:
            return cls(placeholder=name)
        return cls(literals=tuple(token.split("|")))


@dataclass(frozen=True)
class Form:
    """A usage line as words; `provider` is set for a provider's form (a request's takes
    --emergency, a look's doesn't)."""

    words: tuple[Word, ...]
    provider: ProviderRules | None = None
    look: bool = False


def forms_of(usage: str, provider: ProviderRules | None = None, look: bool = False) -> list[Form]:
    """`/promote whop [<app>] <build_id>   e.g. …` → its forms without `/promote`, one with
    and one without each optional word."""
    tokens = usage.split("   e.g.")[0].split()
    if tokens and tokens[0] == "/promote":
        tokens = tokens[1:]
    forms: list[list[Word]] = [[]]
    for token in tokens:
        if token.startswith("[") and token.endswith("]"):
            word = Word.of(token[1:-1])
            forms = [variant for f in forms for variant in (f, [*f, word])]
        else:
            forms = [[*f, Word.of(token)] for f in forms]
    return [Form(tuple(f), provider, look) for f in forms]


def promote_forms(rules: Rules) -> list[Form]:
    forms = [
        form
        for provider in rules.providers.values()
        for usage in provider.forms
        for form in forms_of(usage.usage, provider, usage.look)
    ]
    return forms + [form for usage in USAGE.values() for form in forms_of(usage)]


@dataclass(frozen=True)
class Offer:
    """A word to offer, and what to show beside it."""

    text: str
    meta: str = ""


class ShellCompleter(Completer):
    """Completes shell verbs and `/promote …` from the rules as they are at each keystroke."""

    def __init__(
        self,
        rules: Callable[[], Rules],
        requests: Callable[[tuple[State, ...] | None], Sequence[Request]],
        people: Callable[[], Iterable[str]],
    ) -> None:
        """`requests(states)`: requests in those states (None: any), the open ones first;
        `people()`: who `as` may switch to (nobody when the shell can't switch)."""
        self.rules = rules
        self.requests = requests
        self.people = people

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        before = document.text_before_cursor
        words = before.split()
        current = "" if not words or before[-1].isspace() else words.pop()
        for offer in self.offers(words, current):
            if offer.text.startswith(current) and offer.text != current:
                yield Completion(offer.text, -len(current), display_meta=offer.meta)

    def offers(self, done: list[str], current: str) -> list[Offer]:
        """What may come after the words `done`, for a word that starts `current`."""
        rules = self.rules()
        if not done:
            verbs = [PROMOTE[0], *(usage.split()[0] for usage in SHELL_VERBS)]
            if not list(self.people()):
                verbs.remove("as")
            return [Offer(verb) for verb in verbs]
        if done[0].lower() in PROMOTE:
            return self._after(promote_forms(rules), done[1:], rules)
        shell_forms = [form for usage in SHELL_VERBS for form in forms_of(usage)]
        return self._after(shell_forms, done, rules)

    def _after(self, forms: list[Form], done: list[str], rules: Rules) -> list[Offer]:
        matches = [(form, score) for form in forms if (score := _match(form, done)) is not None]
        if not matches:
            return []
        best = max(score for _, score in matches)
        offers: list[Offer] = []
        for form, score in matches:
            if score < best:
                continue  # `whop storefront` is an app, not a build id
            if len(done) < len(form.words):
                verb = form.words[0].literals[0] if form.words[0].literals else ""
                offers += self._words_for(form.words[len(done)], form.provider, verb, rules)
            elif form.provider is not None and not form.look and len(done) == len(form.words):
                offers.append(Offer(EMERGENCY, "break-glass: passes a lock or a freeze"))
                offers.append(Offer(AT, "run it then: 09:00, tomorrow 09:00, 2026-12-14 09:00"))
        seen: set[str] = set()
        return [o for o in offers if not (o.text in seen or seen.add(o.text))]

    def _words_for(
        self, word: Word, provider: ProviderRules | None, verb: str, rules: Rules
    ) -> list[Offer]:
        if word.literals:
            return [Offer(literal) for literal in word.literals]
        name = word.placeholder or ""
        if provider is not None:
            return [Offer(choice) for choice in provider.choices(name)]
        if name == "request":
            try:
                found = self.requests(_WANTED.get(verb))
            except StoreError:
                return []  # the database is unreachable: the numbers can still be typed
            return [_request_offer(r) for r in found]
        if name in ("target", "target-pattern"):
            targets = [t for p in rules.providers.values() for t in p.targets()]
            if name == "target-pattern":
                targets += [f"{p}:*" for p in rules.providers]
            return [Offer(t) for t in targets]
        if name == "user":
            return [Offer(u) for u in self.people()]
        return []


def _match(form: Form, done: list[str]) -> int | None:
    """How well the words typed so far fit `form` (words that are its literals or one of a
    placeholder's known choices count), or None when they don't fit it."""
    score = 0
    for n, typed in enumerate(done):
        if n >= len(form.words):
            return None if not (form.words and form.words[-1].rest) else score
        word = form.words[n]
        if word.rest:
            return score
        if word.literals:
            if typed.lower() not in word.literals:
                return None
            score += 1
        elif form.provider is not None and typed in form.provider.choices(word.placeholder or ""):
            score += 1
    return score


def _request_offer(request: Request) -> Offer:
    return Offer(str(request.id), f"{request.state.value} · {request.action.title}")


def find_requests(store: Store, states: tuple[State, ...] | None) -> list[Request]:
    """Requests in `states` (None: any): the open ones, oldest first, then up to `RECENT`
    others that something happened to lately, newest first. For a rollback, only the
    succeeded ones that can still be rolled back."""
    wanted = set(states) if states is not None else None
    found: dict[int, Request] = {}
    if wanted is None or wanted & set(OPEN):
        for request in sorted(store.in_states(list(OPEN)), key=lambda r: r.id):
            if wanted is None or request.state in wanted:
                found[request.id] = request
    if wanted is not None and wanted <= set(OPEN):
        return list(found.values())
    looked: set[int] = set(found)
    recent = 0
    for entry in store.history(limit=100):
        if entry.request_id is None or entry.request_id in looked:
            continue
        looked.add(entry.request_id)
        request = store.get(entry.request_id)
        if request is None or (wanted is not None and request.state not in wanted):
            continue
        if wanted == {State.SUCCEEDED} and (
            request.rolled_back_by is not None or not request.action.reversible
        ):
            continue
        found[request.id] = request
        recent += 1
        if recent >= RECENT:
            break
    return list(found.values())
