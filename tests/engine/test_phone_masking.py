"""No spelling of a mainland mobile number leaks through masking."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from carepath.masking import contains_phone, mask_phone, mask_text

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
TO_ASCII = str.maketrans("０１２３４５６７８９", "0123456789")
SEPARATORS = ["", " ", "-", ".", "  ", " - ", "－", "．", "\u3000", "\u00a0", "·"]
PREFIXES = ["", "+86", "+86 ", "+86-", "0086", "0086 ", "86", "86-", "(+86) ", "＋８６ "]
# surrounding text holds no digits, so every digit in the output comes from the number
texts = st.text(alphabet=st.sampled_from(list("请致电或联系家属：,; abcXYZ()[]电话号码\n\t")), max_size=12)


@st.composite
def spellings(draw) -> tuple[str, str, str]:
    """(the number, a country prefix, one way of writing the number)."""
    number = "1" + draw(st.sampled_from("3456789")) + "".join(draw(st.lists(st.sampled_from("0123456789"),
                                                                             min_size=9, max_size=9)))
    groups = draw(st.sampled_from([(3, 4, 4), (3, 3, 5), (11,), (3, 8), (1, 2, 4, 4), (2,) * 5 + (1,)]))
    parts, at = [], 0
    for size in groups:
        parts.append(number[at:at + size])
        at += size
    written = ""
    for i, part in enumerate(parts):
        if draw(st.booleans()):
            part = part.translate(FULL_WIDTH)
        written += (draw(st.sampled_from(SEPARATORS)) if i else "") + part
    return number, draw(st.sampled_from(PREFIXES)), written


def digits(text: str) -> str:
    return "".join(c for c in text.translate(TO_ASCII) if c.isdigit())


@settings(max_examples=400, deadline=None)
@given(spelling=spellings(), before=texts, after=texts)
@example(spelling=("13812345678", "", "138 1234 5678"), before="", after="")
@example(spelling=("13812345678", "", "１３８１２３４５６７８"), before="电话", after="")
@example(spelling=("13812345678", "0086 ", "138.1234.5678"), before="", after="。")
def test_no_spelling_of_a_mobile_number_leaks(spelling, before, after):
    number, prefix, written = spelling
    text = before + prefix + written + after
    masked = mask_text(text)
    expected = digits(prefix) + number[:3] + number[7:]  # the middle four digits are gone
    assert digits(masked) == expected, (text, masked)
    assert "****" in masked and contains_phone(text)
    assert digits(mask_phone(prefix + written)) == expected


def test_other_numbers_are_left_alone():
    for text in ("order 20260501123456", "2026-05-13 10:00", "room 3-12, bed 14", "12345678901", "10086"):
        assert mask_text(text) == text and not contains_phone(text)


def test_a_link_keeps_its_token_but_not_a_number_in_its_query():
    # a survey token that happens to hold "1", a dot and ten digits is not a phone number: the nurse's task
    # quotes the link the patient was sent, and a masked token would be a dead link
    link = "http://survey.example/s/1.5723749323d9993b3cf2979e"
    assert mask_text(f"请评价本次就诊：{link}") == f"请评价本次就诊：{link}" and not contains_phone(link)
    # a number the link carries as a value is still masked, and so is one written next to the link
    assert mask_text("https://h.example/cb?tel=13812345678&x=1") == "https://h.example/cb?tel=138****5678&x=1"
    assert mask_text(f"{link} 电话13812345678") == f"{link} 电话138****5678"
