"""Streamed text deltas add up to the non-streamed text: whitespace, split characters, stop strings."""

from serve_app.runtime.textstream import TextStream

PIECES = ["  Hello", " wor", "ld", "\ufffd", " and", " more  ", "\n"]


def decode(ids):
    # ids index PIECES; a U+FFFD followed by anything becomes "é" (a character split across two tokens).
    text = "".join(PIECES[i] for i in ids)
    return text.replace("\ufffd ", "é ")


def stream_all(stops=()):
    s = TextStream(decode, stops)
    deltas = []
    for i in range(len(PIECES)):
        if s.stopped:
            break
        deltas.append(s.push([i]))
    deltas.append(s.finish())
    return s, "".join(deltas)


def test_deltas_concatenate_to_the_stripped_text():
    s, streamed = stream_all()
    assert streamed == decode(list(range(len(PIECES)))).strip() == s.sent
    assert "\ufffd" not in streamed


def test_a_stop_string_cuts_the_text_and_is_never_sent():
    s, streamed = stream_all(stops=["and m"])
    assert s.stopped and streamed == "Hello worldé"


def test_a_possible_stop_prefix_is_held_back_until_it_cannot_match():
    s = TextStream(decode, ["ld!!"])
    assert s.push([0]) == "Hello"
    assert s.push([1]) == " wor"
    assert s.push([2]) == ""  # "ld" might become "ld!!"
    assert s.push([3]) == "ld"


def test_a_raw_completion_keeps_its_whitespace():
    s = TextStream(decode, strip=False)
    streamed = "".join(s.push([i]) for i in range(len(PIECES))) + s.finish()
    assert streamed == decode(list(range(len(PIECES)))) == s.sent
