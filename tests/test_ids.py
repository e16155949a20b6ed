"""core/ids.py: the id rules (prefix, 16 lower-case hex digits, unguessable and unique) and the
request-id rule shared by the REST bridge and the gRPC interceptor."""

from __future__ import annotations

import os
import re
import string

from hypothesis import given
from hypothesis import strategies as st

from core.ids import new_id, new_request_id, request_id_from, valid_request_id

ID = re.compile(r"(?P<prefix>[a-z]+)_(?P<random>[0-9a-f]{16})")
REQUEST_ID_ALPHABET = string.ascii_letters + string.digits + "._:-"


def test_an_id_is_its_prefix_and_16_lower_case_hex_digits() -> None:
    for prefix in ("proc", "req", "key", "acct", "wh", "msg", "batch", "aud"):
        match = ID.fullmatch(new_id(prefix))
        assert match is not None and match["prefix"] == prefix


def test_a_request_id_is_req_and_16_hex_digits_as_the_reference_shows() -> None:
    value = new_request_id()
    assert ID.fullmatch(value) and value.startswith("req_") and len(value) == len("req_1234567890abcdef")


def test_ids_do_not_repeat() -> None:
    ids = {new_id("proc") for _ in range(20000)}
    assert len(ids) == 20000


def test_a_forked_child_does_not_hand_out_its_parents_buffered_ids() -> None:
    """Ids are drawn 512 at a time: a child forked with part of a draw left must draw afresh."""
    new_id("proc")  # the buffer now holds the rest of a draw
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, "\n".join(new_id("proc") for _ in range(600)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {new_id("proc") for _ in range(600)}
    assert len(child) == 600 and not child & parent


def test_every_hex_digit_appears_in_every_position() -> None:
    # 64 random bits per id: over 2000 ids each of the 16 positions takes all 16 digits.
    ids = [new_id("proc")[5:] for _ in range(2000)]
    for position in range(16):
        assert {i[position] for i in ids} == set("0123456789abcdef")


@given(st.text(alphabet=REQUEST_ID_ALPHABET, min_size=1, max_size=128))
def test_a_client_request_id_of_the_allowed_characters_is_kept(value: str) -> None:
    assert valid_request_id(value)
    assert request_id_from(value) == value


@given(
    st.text(alphabet=REQUEST_ID_ALPHABET, max_size=60),
    st.characters(blacklist_characters=REQUEST_ID_ALPHABET),
    st.text(alphabet=REQUEST_ID_ALPHABET, max_size=60),
)
def test_a_client_request_id_with_any_other_character_is_replaced(before: str, other: str, after: str) -> None:
    value = before + other + after
    assert not valid_request_id(value)
    assert ID.fullmatch(request_id_from(value))


def test_an_empty_missing_or_too_long_request_id_is_replaced() -> None:
    for value in ("", None, "a" * 129, 42):
        assert not valid_request_id(value)
        replaced = request_id_from(value)
        assert replaced.startswith("req_") and ID.fullmatch(replaced)
    assert request_id_from("a" * 128) == "a" * 128
