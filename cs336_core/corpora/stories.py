"""A procedural generator of children's stories in the TinyStories format.

A story is a cast (a hero and a friend with agreeing pronouns, a grown-up), a setting, an opening,
one of eighteen plots (beats of alternative sentences, with dialogue) and an ending or a moral that
fits the plot. The word lists and templates are data, in `story_data.py`. Deterministic by seed.
"""

from __future__ import annotations

import random
import re

import cs336_core.corpora.story_data as data
from cs336_core.corpora.documents import document_record, preview
from cs336_core.files import PathLike, atomic_path
from cs336_core.progress import ProgressFn


def _pronouns(subject: str) -> dict[str, str]:
    """The pronoun slots of a character whose subject pronoun is `subject`.

    >>> _pronouns("she")
    {'he': 'she', 'him': 'her', 'his': 'her', 'himself': 'herself'}
    """
    him, his, himself = ("him", "his", "himself") if subject == "he" else ("her", "her", "herself")
    return {"he": subject, "him": him, "his": his, "himself": himself}


def _character(rng: random.Random, avoid: set[str]) -> dict[str, str]:
    subject = rng.choice(("he", "she"))
    names = data.BOY_NAMES if subject == "he" else data.GIRL_NAMES
    name = rng.choice([n for n in names if n not in avoid])
    kind = rng.choice(data.ANIMAL_KINDS) if rng.random() < 0.4 else data.PEOPLE_KINDS[subject]
    return {"name": name, "kind": kind, "adjective": rng.choice(data.HERO_ADJECTIVES), **_pronouns(subject)}


def _opening(rng: random.Random) -> str:
    sentences = [rng.choice(data.OPENINGS)]
    if rng.random() < 0.6:
        sentences.append(rng.choice(data.HABITS))
    if rng.random() < 0.5:
        sentences.append(rng.choice(data.WEATHER))
    return " ".join(sentences)


def _story_slots(rng: random.Random) -> dict[str, str]:
    hero = _character(rng, set())
    friend = _character(rng, {hero["name"]})
    grownup = rng.choice(data.GROWNUPS)
    grownup_pronoun = "she" if grownup in ("mom", "grandma", "big sister", "aunt") else (
        "he" if grownup in ("dad", "grandpa", "big brother", "uncle") else rng.choice(("he", "she")))
    activity, activity_ing = rng.choice(data.ACTIVITIES)
    _, friend_activity_ing = rng.choice(data.ACTIVITIES)
    fear, fear_answer = rng.choice(data.FEARS)
    slots = {
        "hero": hero["name"], "hero_kind": hero["kind"], "hero_adj": hero["adjective"],
        "he": hero["he"], "him": hero["him"], "his": hero["his"], "himself": hero["himself"],
        "friend": friend["name"], "friend_kind": friend["kind"], "friend_adj": friend["adjective"],
        # "Pip the frog", but "her friend Tom" rather than "Tom the boy".
        "friend_called": (f"{hero['his']} friend {friend['name']}" if friend["kind"] in ("boy", "girl")
                          else f"{friend['name']} the {friend['kind']}"),
        "animal": rng.choice(data.ANIMAL_KINDS), "color": rng.choice(data.COLORS),
        "pet": rng.choice(data.PET_NAMES), "Grownup": grownup.capitalize(),
        "fhe": friend["he"], "fhim": friend["him"], "fhis": friend["his"],
        "grownup": grownup, "grownup_pronoun": grownup_pronoun,
        "place": rng.choice(data.PLACES), "thing": rng.choice(data.THINGS),
        "thing_adj": rng.choice(data.THING_ADJECTIVES),
        "treat": rng.choice(data.TREATS), "activity": activity, "activity_ing": activity_ing,
        "friend_activity_ing": friend_activity_ing,
        "good": rng.choice(data.GOOD_FEELINGS), "bad": rng.choice(data.BAD_FEELINGS),
        "hiding": rng.choice(data.HIDING_SPOTS), "high": rng.choice(data.HIGH_SPOTS),
        "fear": fear, "fear_answer": fear_answer, "time": rng.choice(data.TIMES), "Then": rng.choice(data.THENS),
    }
    slots["He"], slots["His"] = slots["he"].capitalize(), slots["his"].capitalize()
    slots["fHe"], slots["fHis"] = slots["fhe"].capitalize(), slots["fhis"].capitalize()
    return slots


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])(?!uni|use|one)")


def _fill(template: str, slots: dict[str, str]) -> str:
    """A template with its slots filled, "a" before a vowel made "an", the first letter capitalised.

    >>> _fill("{he} found a {thing}.", {"he": "she", "thing": "orange kite"})
    'She found an orange kite.'
    """
    text = _A_BEFORE_VOWEL.sub(r"\1n ", template.format_map(slots))  # "an orange kite", "an owl"
    return text[0].upper() + text[1:]


def generate_story(rng: random.Random) -> str:
    """One story: an opening, a plot (beats of alternative sentences), and an ending or a moral."""
    slots = _story_slots(rng)
    paragraphs = [_fill(_opening(rng), slots)]
    plot = rng.choice(data.PLOT_NAMES)
    beats = data.PLOTS[plot]
    sentences: list[str] = []
    for beat in beats:
        sentences.append(_fill(rng.choice(beat), slots))
        slots["Then"] = rng.choice(data.THENS)
        # Paragraph breaks at varied points, as in TinyStories.
        if len(sentences) >= 2 and rng.random() < 0.35:
            paragraphs.append(" ".join(sentences))
            sentences = []
    closing = []
    if rng.random() < 0.7:
        closing.append(_fill(rng.choice(data.ENDINGS), slots))
    if rng.random() < 0.5:
        closing.append(_fill(rng.choice(data.PLOT_MORALS[plot] + data.GENERIC_MORALS[:1]), slots))
    sentences.extend(closing)
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n".join(paragraphs)


def generate_stories(out_path: PathLike, *, target_bytes: int, seed: int = 0,
                     progress: ProgressFn | None = None) -> dict:
    """Write generated stories to `out_path` until it holds at least `target_bytes` bytes.

    The same seed gives a byte-identical file. Streamed (constant memory) and atomic.
    """
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, got {target_bytes}")
    rng = random.Random(seed)
    written = documents = 0
    first = ""
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        while written < target_bytes:
            story = generate_story(rng)
            first = first or story
            record = document_record(story).encode("utf-8")
            f.write(record)
            written += len(record)
            documents += 1
            if progress and documents % 2000 == 0:
                progress("generate stories", min(written, target_bytes), target_bytes)
    if progress:
        progress("generate stories", target_bytes, target_bytes)
    return {"path": str(out_path), "bytes": written, "documents": documents, "preview": preview(first)}

