"""Small lxml helpers shared by the domain and device XML builders."""
from __future__ import annotations

import re

from lxml import etree

# Characters XML 1.0 cannot carry at all, not even escaped (https://www.w3.org/TR/xml/#charsets).
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str) -> str:
    """Return `value` without the characters XML 1.0 forbids (lxml escapes the rest itself)."""
    return _NOT_XML_CHAR.sub("", value)


def sub(parent: etree._Element, tag: str, text: str | None = None, /, **attrs: str) -> etree._Element:
    """Append a `<tag attrs...>text</tag>` child to `parent` and return it."""
    child = etree.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = xml_text(text)
    return child


def on(parent: etree._Element, *tags: str) -> None:
    """Append one `<tag state='on'/>` child per tag, the form libvirt uses for feature switches."""
    for tag in tags:
        sub(parent, tag, state="on")
