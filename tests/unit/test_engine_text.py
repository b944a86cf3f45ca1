"""Incremental detokenizing and stop strings matched across token boundaries."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from grok_worker.engine.text import ByteTokenizer, IncrementalDetokenizer, StopMatcher, TextStream

TOK = ByteTokenizer()


def stream_text(stops: Sequence[str], text: str) -> tuple[str, str | None, list[str]]:
    ts = TextStream(TOK, stops)
    deltas = []
    for token in TOK.encode(text):
        out, matched = ts.push(token)
        deltas.append(out)
        if matched:
            return ts.text, matched, deltas
    deltas.append(ts.flush())
    return ts.text, None, deltas


def test_multibyte_characters_are_emitted_only_when_complete() -> None:
    detok = IncrementalDetokenizer(TOK)
    deltas = [detok.push(t) for t in TOK.encode("aé€")]
    assert deltas == ["a", "", "é", "", "", "€"]


def test_stop_across_tokens_is_held_back_and_cut() -> None:
    text, matched, deltas = stream_text(["cd"], "abcde")
    assert (text, matched) == ("ab", "cd")
    assert deltas == ["a", "b", "", ""]


def test_held_text_is_released_when_the_stop_does_not_complete() -> None:
    text, matched, deltas = stream_text(["cx"], "abcd")
    assert (text, matched) == ("abcd", None)
    assert deltas == ["a", "b", "", "cd", ""]


def test_earliest_of_several_stops_wins() -> None:
    text, matched, _ = stream_text(["e", "bcd"], "abcdef")
    assert (text, matched) == ("a", "bcd")


def test_stop_matcher_on_multi_character_deltas() -> None:
    m = StopMatcher(["END"])
    assert m.push("hello E") == ("hello ", None)
    assert m.push("N") == ("", None)
    assert m.push("Dtail") == ("", "END")


@given(
    st.text(alphabet="abc", max_size=30),
    st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=3),
)
def test_streamed_output_equals_cutting_where_a_stop_first_completes(text: str, stops: list[str]) -> None:
    # Reference: the shortest prefix of the text that contains a stop string; cut it at the
    # earliest start of the stops it contains.
    expected, stopped = text, False
    for end in range(1, len(text) + 1):
        hits = [text[:end].find(s) for s in stops if s in text[:end]]
        if hits:
            expected, stopped = text[: min(hits)], True
            break
    got, matched, deltas = stream_text(stops, text)
    assert got == expected == "".join(deltas)
    assert (matched is not None) == stopped
