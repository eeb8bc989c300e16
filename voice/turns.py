"""What an utterance means for the turn: a backchannel, a turn that is not over yet, or a complete turn.

Text rules, cheap enough to run on every final transcript:

- A **backchannel** ("uh-huh", "okay", "right", "yeah") is the listener
  keeping the channel open, not taking the turn: under the semantic
  interruption strategy it never interrupts the agent, and it is not stored
  as a message.
- An **incomplete turn** ends where a sentence cannot end: on a conjunction,
  a preposition, an article, a possessive or a linking verb ("my order
  number is", "I want to", "and the"). The caller is thinking, not done; the
  turn waits a little longer for the rest before the agent answers.
"""

from __future__ import annotations

import re

_WORDS = re.compile(r"[a-z']+")

BACKCHANNELS = frozenset(
    {
        "uh-huh",
        "uh huh",
        "mhm",
        "mm-hmm",
        "mm hmm",
        "hmm",
        "ok",
        "okay",
        "right",
        "yeah",
        "yep",
        "yes",
        "sure",
        "i see",
        "got it",
        "alright",
        "all right",
        "cool",
        "oh",
        "ah",
        "go on",
        "uh",
        "um",
    }
)

# Words a sentence does not end on.
_DANGLING = frozenset(
    "a an the and or but so because if then than that which who whose whom where when while of to for from with "
    "about into onto at by in on as is are was were be been am my your his her our their its this these those "
    "i'm it's i'd i'll number like um uh er".split()
)


def _normalized(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower().replace("-", " ")))


_BACKCHANNEL_FORMS = frozenset(_normalized(b) for b in BACKCHANNELS)


def is_backchannel(text: str) -> bool:
    """True for a short acknowledgement ("uh-huh", "okay, right") that does not take the turn."""
    words = _normalized(text)
    if not words or len(words.split()) > 4:
        return False
    if words in _BACKCHANNEL_FORMS:
        return True
    # "okay okay", "yeah right", "uh huh yeah": every piece a backchannel.
    parts = words.split()
    return all(p in _BACKCHANNEL_FORMS for p in parts) or all(
        " ".join(parts[i : i + 2]) in _BACKCHANNEL_FORMS for i in range(0, len(parts), 2)
    )


def is_incomplete_turn(text: str) -> bool:
    """True when the utterance stops where a sentence cannot (the caller has more to say)."""
    # Speech recognizers (Whisper) end nearly every utterance with a full stop: judge by the words.
    stripped = text.strip().rstrip(".…, ")
    if not stripped or stripped[-1] in "?!":
        return False
    words = _normalized(stripped).split()
    return bool(words) and words[-1] in _DANGLING
