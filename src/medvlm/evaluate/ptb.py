"""Pure-Python PTB tokenisation that matches pycocoevalcap's Java tokenizer on report text.

pycocoevalcap 1.2 tokenises with Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase``
and then drops the tokens in :data:`PUNCTUATIONS`. This module re-implements the lexer rules that
matter for English text (a JFlex longest-match scanner: the longest match wins, the earlier rule
breaks ties, trailing context counts towards the length), so metrics need no Java for tokenisation.

pycocoevalcap writes all captions of one dict into one file, one caption a line, and the lexer looks
across line ends: ``"etc."`` at the end of a caption becomes ``"etc. ."`` when the next caption starts
with a capital letter or is the last one. :func:`ptb_tokenize_batch` reproduces that, given the
captions in the order pycocoevalcap would write them; :func:`ptb_tokenize` tokenises one text alone
(as the last line of a file).

Deliberate difference: a line break inside a text (``\\r``, ``\\u2028``, ...) that pycocoevalcap does
not replace starts a new line in Java and shifts every later caption by one; here it is a space.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# pycocoevalcap removes these tokens after tokenisation. Note the upper-case bracket names: with
# -lowerCase the tokenizer writes "-lrb-", so brackets survive in practice.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Python's \w also holds numerics such as "²" and "½" that Java's isLetter/isDigit reject.
_NOT_LETTER_NUMERICS = "\u00B2\u00B3\u00B9\u00BC-\u00BE\u2070-\u209F\u2150-\u218F\u2460-\u24FF\u2776-\u2793"
_LET = rf"[^\W\d_{_NOT_LETTER_NUMERICS}]"
_LETDIG = rf"[^\W_{_NOT_LETTER_NUMERICS}]"
_SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
_SPACENL = r"[ \t\u00A0\u2000-\u200A\u3000\n]"
_SGML = r"</?[A-Za-z!?][^>\n]*>"
_APOS = r"(?:['\u0092\u2019]|&apos;)"
_APOSETC = r"(?:['\u0092\u2019\u0091\u2018\u201B]|&apos;)"
_REDAUX = _APOS + r"(?:[msd]|re|ve|ll)"
_SREDAUX = "n" + _APOSETC + "t"
_WORD = rf"{_LET}{_LETDIG}*(?:[.!?]{_LET}{_LETDIG}*)*"
_NUM = r"\d*(?:[.:,\u00AD\u066B\u066C]\d+)+|\d+"
_HYPHEN = r"[-_\u058A\u2010\u2011]"
_ACRO = r"[A-Za-z](?:\.[A-Za-z])+"
_ABMONTH = r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
_ABDAYS = r"Mon|Tue|Tues|Wed|Thu|Thurs|Fri"
# States that are also common words are case sensitive in CoreNLP (character classes ignore %caseless).
_ABSTATE = (
    r"Ala|Ariz|(?-i:A)z|(?-i:A)rk|Calif|Colo|Conn|Ct|Dak|(?-i:D)el|Fla|Ga|(?-i:I)ll|Ind|Kans?|Ky|(?-i:L)a"
    r"|(?-i:M)ass|Md|Mich|Minn|(?-i:M)iss|Mo|Mont|Neb|Nev|Okla|(?-i:O)re|(?-i:P)a|Penn|Tenn|(?-i:T)ex|Va|Vt"
    r"|(?-i:W)ash|Wisc?|Wyo"
)
_ABCOMP = r"Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys"
_ABNUM = r"tel|est|ext|sq"
_ABPTIT = r"Jr|Sr|Bros|(?:Ed|Ph)\.D|Blvd|Rd|Esq"
_ABBREV1 = rf"(?:{_ABMONTH}|{_ABDAYS}|{_ABSTATE}|{_ABCOMP}|{_ABNUM}|{_ABPTIT}|etc|al|seq)\."
_ABTITLE = (
    r"Mr|Mrs|Ms|(?-i:M)iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Mt"
    r"|Capt|Ste?|Ave|Pres|Lieut|Rt|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle"
    r"|Mme|Msgr|Sfc"
)
_ABCOMP2 = r"Invt|Elec|Natl|M[ft]g|Dept"
_ABBREV4 = rf"(?:{_ACRO}|{_ABTITLE}|vs|(?-i:v)|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph|{_ABCOMP2}|[A-Za-z])"
# Abbreviations that keep their period only before a number ("No. 3", "Fig. 2").
_ABBREV3 = r"(?:ca|figs?|prop|nos?|art|bldg|pp|op)\."
_SENT_WORDS = (
    "About|According|Additionally|After|An|A|As|At|But|Earlier|He|Her|Here|However|If|In|It|Last|Many|More"
    r"|Mr\.|Ms\.|Now|Once|One|Other|Our|She|Since|So|Some|Such|That|The|Then|There|These|They|This|We|When"
    "|While|What|Yet|You"
)
# First letter case sensitive, the rest caseless, as CoreNLP writes them ([A]bout).
_SENT_WORDS_RE = "|".join(f"(?-i:{w[0]}){w[1:]}" for w in _SENT_WORDS.split("|"))
_QUOTE_CHARS = "`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB"
_MISC = (
    "\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7\u0387\u05BE\u05C0\u05C3"
    "\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D\u0703-\u070D\u07F6-\u07F8"
    "\u0964\u0965\u0E4F\u2020-\u2023\u2032-\u2038\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF"
    "\u2200-\u22FF\u2300-\u23FF\u2600-\u26FF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65"
)


def _latex_quotes(tok: str, probably_left: bool) -> str:
    if probably_left:
        tok = re.sub(r"&apos;|'", "`", tok)
        tok = re.sub(r'"|&quot;', "``", tok)
    else:
        tok = re.sub(r"&apos;|'", "'", tok)
        tok = re.sub(r'"|&quot;', "''", tok)
    tok = re.sub("[\u0091\u2018\u201B\u2039]", "`", tok)
    tok = re.sub("[\u0092\u2019\u203A]", "'", tok)
    tok = re.sub("[\u0093\u201C\u00AB]", "``", tok)
    return re.sub("[\u0094\u201D\u00BB]", "''", tok)


def _currency(tok: str) -> str:
    return re.sub("[\u0080\u00A4\u20A0\u20AC]", "$", tok.replace("\u00A2", "cents").replace("\u00A3", "#"))


_FRACTIONS = {"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}

_SKIP = "skip"  # whitespace: no token (untokenizable characters are deleted too, as CoreNLP's default)


@dataclass(frozen=True)
class _Rule:
    """One lexer rule: ``main`` is the token text, ``trail`` the trailing context (counted in the length)."""

    name: str
    first: re.Pattern  # characters a match can start with (a cheap filter)
    main: re.Pattern
    trail: re.Pattern | None
    emit: Callable[[str], str] | str  # token text from the matched text, or _SKIP
    pushback: int = 0  # characters given back after emitting (they are lexed again)


def _rule(name: str, first: str, main: str, emit, trail: str | None = None, pushback: int = 0) -> _Rule:
    flags = re.IGNORECASE
    return _Rule(
        name,
        re.compile(first, flags),
        re.compile(main, flags),
        re.compile(trail, flags) if trail is not None else None,
        emit,
        pushback,
    )


def _same(tok: str) -> str:
    return tok


def _hyphens(tok: str) -> str:
    return "--" if 3 <= len(tok) <= 4 else tok


def _phone(tok: str) -> str:
    return tok.replace(" ", "\u00A0").replace("(", "-LRB-").replace(")", "-RRB-")


# In CoreNLP's order (earlier rules win ties between equally long matches).
_RULES: tuple[_Rule, ...] = (
    _rule("cannot", "c", "cannot", lambda t: t[:3], pushback=3),
    _rule("sgml", "<", _SGML, lambda t: t.replace(" ", "\u00A0")),
    _rule("mdash", "[&\u0096\u0097\u2013\u2014\u2015]", r"&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", lambda t: "--"),
    _rule("amp", "&", "&amp;", lambda t: "&"),
    _rule("sgml_punct", "&", r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", _same),
    _rule("word_before_redaux", _LET, _WORD, _same, trail=_REDAUX),
    _rule("sword_before_nt", "[a-z\u00AD]", r"(?-i:[A-Za-z\u00AD]*[A-MO-Za-mo-z])\u00AD*", _same, trail=_SREDAUX),
    _rule("word", _LET, _WORD, _same),
    _rule(
        "apoword",
        r"['\u0092\u2019&a-z]|[^\W\d_]",
        rf"{_APOS}n{_APOS}?|(?-i:[lLdDjJ]){_APOS}|Dunkin{_APOS}|somethin{_APOS}|ol{_APOS}|{_APOS}em"
        rf"|(?-i:[A-HJ-XZn]){_APOSETC}{_LET}{{2}}{_LET}*|{_APOS}[2-9]0s|{_APOS}till?"
        rf"|{_LET}+(?-i:[aeiouyAEIOUY]){_APOSETC}(?-i:[aeiouA-Z]){_LET}*|{_APOS}cause|cont'd\.?|'twas"
        r"|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l",
        _same,
    ),
    _rule("apoword2", "y", "y" + _APOS, _same, trail=_LET),
    _rule(
        "full_url",
        "h",
        r"https?://[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]",
        _same,
    ),
    _rule(
        "likely_url",
        r"[^ \t\n\f\r\"`'<>|.!?(){},]",
        r"(?:(?:www\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},\-_$]+\.)+(?:com|net|org|edu)))"
        r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?",
        _same,
    ),
    _rule("email", r"[a-z0-9]", r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@(?:[^ \t\n\f\r\"<>|().\u00A0]+\.)+[a-zA-Z]{2,4}", _same),
    _rule("twitter", "[@#]", rf"@[a-zA-Z_][a-zA-Z_0-9]*|#{_LET}(?:{_LETDIG}|_)*{_LETDIG}", _same),
    _rule("redaux", r"['\u0092\u2019&]", _REDAUX, lambda t: _latex_quotes(t, False), trail=r"[^A-Za-z]"),
    _rule("sredaux", "n", _SREDAUX, lambda t: _latex_quotes(t, False)),
    _rule("date", r"\d", r"\d{1,2}[-/]\d{1,2}[-/]\d{2,4}", _same),
    _rule("number", r"[-+\d.:,\u066B\u066C]", rf"[-+]?(?:{_NUM})", lambda t: t.replace("\u00AD", "")),
    _rule("subsupnum", "[\u207A\u207B\u208A\u208B\u2070\u00B9\u00B2\u00B3\u2074-\u2079\u2080-\u2089]",
          "[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)", _same),
    _rule("frac", r"\d", r"(?:\d{1,4}[- \u00A0])?\d{1,4}(?:\\?/|\u2044)\d{1,4}", lambda t: t.replace(" ", "\u00A0")),
    _rule("frac2", "[\u00BC\u00BD\u00BE\u2153-\u215E]", "[\u00BC\u00BD\u00BE\u2153-\u215E]",
          lambda t: _FRACTIONS.get(t, t)),
    _rule("tbspec", r"[-cspa]", r"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls"
          rf"|Cap{_APOS}n|c{_APOS}est", _same),
    _rule("thing3", "[a-z0-9]", r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}", _same),
    _rule("dolsign", r"[A-Z$#]", r"(?-i:[A-Z])*\$|#", _same),
    _rule("dolsign2", "[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]",
          "[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]", _currency),
    # An acronym before a word that usually starts a sentence ends it: "U.S." then "." as well.
    # A single letter there is not an acronym: "V. The" gives "V" and ".".
    _rule("acronym_sentence_end", "[a-z]", r"[A-Za-z](?:\.[A-Za-z])*\.", lambda t: t[:-1] if len(t) == 2 else t,
          trail=rf"{_SPACENL}+(?:{_SENT_WORDS_RE}){_SPACENL}", pushback=1),
    # "etc." before a capital, a blank or the end of the text ends the sentence: "etc." then "."
    _rule("abbrev1_sentence_end", "[a-z]", _ABBREV1, _same,
          trail=rf"{_SPACENL}(?:{_SPACENL}|(?-i:[A-Z])|{_SGML}|\Z)|\Z", pushback=1),
    _rule("abbrev1", "[a-z]", _ABBREV1, _same),
    _rule("abbrev3", "[a-z]", _ABBREV3, _same, trail=rf"{_SPACENL}?\d"),
    _rule("abbrev2", "[a-z]", _ABBREV4 + r"\.", _same),
    _rule("abbrev4", "[a-z]", _ABBREV4, _same, trail=_SPACE),
    _rule("acro", "[a-z]", _ACRO, _same, trail=_SPACENL),
    _rule("tbspec2", r"['\u0092\u2019&]", _APOS + r"[0-9][0-9]", _same, trail=_SPACENL),
    _rule("word_dot", _LET, _WORD + r"\.", _same, trail="[,;:]"),
    _rule("phone", r"[(\d]", r"(?:\([0-9]{3}\)[ \u00A0]?|[0-9]{3}[- \u00A0.])[0-9]{3}[- \u00A0.][0-9]{4}", _phone),
    _rule("open_dblquote", '["&]', r'"|&quot;', lambda t: _latex_quotes(t, True), trail="[A-Za-z0-9$]"),
    _rule("dblquote", '["&]', r'"|&quot;', lambda t: _latex_quotes(t, False)),
    _rule("lt_gt", "&", "&lt;|&gt;", lambda t: "<" if t.lower() == "&lt;" else ">"),
    _rule("symbols", r"[+%&~^|\\<>=/\u2030\u2031]", r"[+%&~^|\\<>=/\u2030\u2031]", _same),
    _rule("brackets", r"[\[\]{}()]", r"[\[\]{}()]", lambda t: _BRACKETS[t]),
    _rule("hyphens", "-", "-+", _hyphens),
    _rule("ldots", "[.\u0085\u2026]", r"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", lambda t: "..."),
    _rule("fnmarks", "[@#_]", "@+|#+|_+", _same),
    _rule("asts", r"[*\\]", r"\*+|(?:\\\*){1,3}", _same),
    _rule("insentp", "[,;:]", "[,;:]", _same),
    _rule("bang", "[?!]", "[?!]+", _same),
    _rule("period", "[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA]",
          "[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA]", _same),
    _rule("hthing_dot", _LETDIG, r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|" + _ACRO + r"\.))+\.",
          lambda t: t.replace("\u00AD", ""), trail="[,;:]"),
    _rule("hthing", _LETDIG, r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|" + _ACRO + r"\.))+",
          lambda t: t.replace("\u00AD", "")),
    _rule("thing_dot", _LETDIG,
          rf"(?:[dol]{_APOSETC}{_LETDIG})?{_LETDIG}+(?:{_HYPHEN}(?:[dol]{_APOSETC}{_LETDIG})?{_LETDIG}+)*\.",
          _same, trail="[,;:]"),
    _rule("thing", _LETDIG,
          rf"(?:[dol]{_APOSETC}{_LETDIG})?{_LETDIG}+(?:{_HYPHEN}(?:[dol]{_APOSETC}{_LETDIG})?{_LETDIG}+)*", _same),
    _rule("thinga_dot", "[A-Z]", r"(?-i:[A-Z])+(?:(?:[+&]|&amp;)(?-i:[A-Z])+)+\.", lambda t: t.replace("&amp;", "&"),
          trail="[,;:]"),
    _rule("thinga", "[A-Z]", r"(?-i:[A-Z])+(?:(?:[+&]|&amp;)(?-i:[A-Z])+)+", lambda t: t.replace("&amp;", "&")),
    _rule("open_quote", "'", "'", lambda t: _latex_quotes(t, True), trail=r"[A-Za-z][^ \t\n\r\u00A0]"),
    _rule("redaux_any", r"['\u0092\u2019&]", _REDAUX, lambda t: _latex_quotes(t, False)),
    _rule("quotes", f"['&{_QUOTE_CHARS}]", f"''|[{_QUOTE_CHARS}]{{1,2}}|{_APOS}", lambda t: _latex_quotes(t, False)),
    _rule("misc_symbol", f"[{_MISC}]", f"[{_MISC}]", _same),
    _rule("space", "[ \t\u00A0\u2000-\u200A\u3000\u0000\u200B\u200E\u200F\uFEFF]",
          "[ \t\u00A0\u2000-\u200A\u3000\u0000\u200B\u200E\u200F\uFEFF]+", _SKIP),
)

_NEWLINES = re.compile("\r\n|[\n\r\u2028\u2029\u000B\u000C\u0085]")
# Fast paths, each checked to give what the full rule set gives: a run of ASCII letters before a blank
# or the end is a word; so is one before "." or "," and a blank or the end, unless the letters with the
# period could be an abbreviation ("etc.", "Dr.", "x.").
_PLAIN_WORD = re.compile(r"[A-Za-z]+(?=[ \n]|\Z)")
_WORD_BEFORE_PUNCT = re.compile(r"[A-Za-z]+(?=[.,](?:[ \n]|\Z))")
_ANY_ABBREV = re.compile(rf"{_ABBREV1}|{_ABBREV3}|{_ABBREV4}\.", re.IGNORECASE)
_BLANKS = re.compile(" +")
_not_abbreviation: dict[str, bool] = {}
_candidates_by_char: dict[str, tuple[_Rule, ...]] = {}


def _candidates(ch: str) -> tuple[_Rule, ...]:
    rules = _candidates_by_char.get(ch)
    if rules is None:
        rules = tuple(r for r in _RULES if r.first.match(ch))
        _candidates_by_char[ch] = rules
    return rules


def _lex(text: str) -> list[list[str]]:
    """Tokens of each line of ``text`` (lines split on ``\\n``), case preserved, punctuation kept."""
    lines: list[list[str]] = [[]]
    tokens = lines[0]
    pos, end = 0, len(text)
    while pos < end:
        ch = text[pos]
        if ch == "\n":
            tokens = []
            lines.append(tokens)
            pos += 1
            continue
        if ch == " ":
            pos = _BLANKS.match(text, pos).end()
            continue
        plain = _PLAIN_WORD.match(text, pos) or _WORD_BEFORE_PUNCT.match(text, pos)
        if plain is not None:
            word = plain.group()
            after = plain.end()
            simple = len(word) != 6 or word.lower() != "cannot"
            if simple and after < end and text[after] == ".":
                simple = _not_abbreviation.get(word)
                if simple is None:
                    simple = _ANY_ABBREV.fullmatch(word + ".") is None
                    _not_abbreviation[word] = simple
            if simple:
                tokens.append(word)
                pos = after
                continue
        best: _Rule | None = None
        best_total = best_main = 0
        for rule in _candidates(ch):
            m = rule.main.match(text, pos)
            if m is None or m.end() == pos:
                continue
            main_end = m.end()
            total = main_end - pos
            if rule.trail is not None:
                t = rule.trail.match(text, main_end)
                if t is None:
                    continue
                total += t.end() - main_end
            if total > best_total:
                best, best_total, best_main = rule, total, main_end - pos
        if best is None:  # untokenizable: CoreNLP deletes it
            pos += 1
            continue
        matched = text[pos : pos + best_main]
        if best.emit is _SKIP:
            pos += best_main
            continue
        tokens.append(best.emit(matched))
        pos += best_main - best.pushback
    return lines


def _finish(tokens: list[str]) -> str:
    return " ".join(t for t in (tok.lower() for tok in tokens) if t not in PUNCTUATIONS)


def ptb_tokenize_batch(texts: Sequence[str]) -> list[str]:
    """Tokenise texts as pycocoevalcap does one dict of captions (one caption a line, in this order).

    Returns, per text, the lower-cased tokens joined by single spaces with pycocoevalcap's
    punctuation removed. The lexer looks one line ahead, as the Java tokenizer does.
    """
    joined = "\n".join(_NEWLINES.sub(" ", text) for text in texts)
    lines = _lex(joined)
    return [_finish(tokens) for tokens in lines[: len(texts)]] + [""] * max(0, len(texts) - len(lines))


def ptb_tokenize(text: str) -> str:
    """Tokenise one text like pycocoevalcap's PTBTokenizer (lower-cased, punctuation removed).

    >>> ptb_tokenize("Heart size is normal. No pneumothorax, effusion (left).")
    'heart size is normal no pneumothorax effusion -lrb- left -rrb-'
    """
    return ptb_tokenize_batch([text])[0]
