"""core.serial's memo: values decoded from text are reused only for that exact text, and the
memo stays bounded; a memoised decode gives what a fresh decode gives."""

from __future__ import annotations

import json

from reference_impl.core.events import PaymentPosted, PaymentReceived, PaymentReserved
from reference_impl.core.events import decode as decode_event
from reference_impl.core.events import encode as encode_event
from reference_impl.core.payments import Payment, PaymentStatus
from reference_impl.core.serial import Memo


def test_a_memo_keeps_at_most_two_generations_and_keeps_what_is_read_again() -> None:
    memo: Memo[str, int] = Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("c", 3)  # the young generation was full: a and b are now the old one
    assert memo.get("a") == 1  # read again: back in the young generation
    memo.put("d", 4)  # full again (c, a): b is dropped with the old generation
    assert memo.get("b") is None
    assert (memo.get("a"), memo.get("c"), memo.get("d")) == (1, 3, 4)


def test_a_payment_read_from_text_is_the_payment_a_fresh_decode_gives() -> None:
    payment = Payment("p-1", "t-1", "k-1", "a-1", "a-2", 2500, "EUR", 1.25, metadata={"z": 1})
    text = payment.to_json()
    posted = payment.move(PaymentStatus.SCREENING).move(PaymentStatus.RESERVED)
    posted = posted.move(PaymentStatus.POSTED, posted_at=2.5)
    for p, t in ((payment, text), (posted, posted.to_json())):
        fresh = json.loads(t)
        assert Payment.from_json(t) == p
        assert Payment.from_json(t).status is PaymentStatus(fresh["status"])
        assert Payment.from_json(json.dumps(fresh, sort_keys=True)) == p  # a text never seen


def test_events_with_the_same_payload_and_another_type_decode_to_their_own_type() -> None:
    received = PaymentReceived("p-1", "t-1", "a-1", 3.0)
    reserved = PaymentReserved("p-1", "t-1", "a-1", 3.0)
    _, received_type, _, received_payload = encode_event(received)
    _, reserved_type, _, reserved_payload = encode_event(reserved)
    assert received_payload == reserved_payload
    assert type(decode_event(received_type, received_payload)) is PaymentReceived
    assert type(decode_event(reserved_type, reserved_payload)) is PaymentReserved
    posted = PaymentPosted("p-1", "t-1", "a-1", 4.0, "a-2", 100, "EUR")
    assert decode_event("PaymentPosted", encode_event(posted)[3]) == posted
