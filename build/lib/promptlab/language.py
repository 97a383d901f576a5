"""Which language a dataset's texts are in, so proposers can be told (DSPy's meta-prompts write English
instructions for any data: dspy #729).

Why py3langid: a maintained fork of langid.py whose model ships inside the wheel (offline, numpy only,
97 languages, ~1 ms a text); a script-range heuristic of ours could not tell German from English.
"""
from __future__ import annotations

from collections import Counter

NAMES = {
    "en": "English", "ru": "Russian", "uk": "Ukrainian", "be": "Belarusian", "bg": "Bulgarian", "pl": "Polish",
    "cs": "Czech", "sk": "Slovak", "de": "German", "fr": "French", "es": "Spanish", "pt": "Portuguese",
    "it": "Italian", "nl": "Dutch", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish",
    "et": "Estonian", "lv": "Latvian", "lt": "Lithuanian", "hu": "Hungarian", "ro": "Romanian", "el": "Greek",
    "tr": "Turkish", "ar": "Arabic", "he": "Hebrew", "fa": "Persian", "hi": "Hindi", "bn": "Bengali",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian",
    "ms": "Malay", "kk": "Kazakh", "ka": "Georgian", "hy": "Armenian", "sr": "Serbian", "hr": "Croatian",
}


def detect_language(texts: list[str], sample: int = 60, min_share: float = 0.6) -> str:
    """The ISO 639-1 code most of the texts are in, or "en" when none reaches `min_share` of them
    (mixed data is treated as English: the proposers' default)."""
    texts = [t for t in texts if isinstance(t, str) and len(t.strip()) >= 3][:sample]
    if not texts:
        return "en"
    import py3langid  # its model loads on first use (~0.3 s); most runs are in English and never ask

    votes = Counter(py3langid.classify(t)[0] for t in texts)
    code, n = votes.most_common(1)[0]
    return code if n / len(texts) >= min_share else "en"


def language_name(code: str) -> str:
    return NAMES.get(code, code)
