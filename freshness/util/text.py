"""Text facts every layer agrees on: what counts as blank, how a byte name is shown."""

from __future__ import annotations

import os
import re

# Characters that render as nothing: zero-width space/joiners, word joiner, BOM / ZWNBSP.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_BLANK = re.compile(rf"[\s{INVISIBLE}]*")
BOM = "\ufeff"
BLANK_RE2 = "^[\\s\\x{200B}-\\x{200D}\\x{2060}\\x{FEFF}]*$"  # is_blank for DuckDB (RE2)


def is_blank(text: str) -> bool:
    """True when `text` holds nothing but whitespace and zero-width characters."""
    return _BLANK.fullmatch(text) is not None


def strip_bom(text: str) -> str:
    """`text` without one leading byte-order mark (an encoding artefact, not content)."""
    return text[1:] if text.startswith(BOM) else text


def printable_name(name: str) -> str:
    """A file name as valid UTF-8 text: undecodable bytes shown as `\\xNN`."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def valid_utf8_name(name: str) -> bool:
    """False when the OS name held bytes that are not UTF-8 (surrogate-escaped by Python)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
