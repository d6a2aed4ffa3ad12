"""The AML rules: each fires past its edge and not at it, no movement counts twice, and only
movements inside a rule's window and not later than the payment count."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_impl.core.aml import AmlRules, Movement, window_span
from reference_impl.core.checks import APPROVE
from reference_impl.core.errors import InvalidInput

RULES = AmlRules()
AT = 100_000.0
SMALL = 1_000  # 10.00: far from every amount limit


def outgoing(n: int, amount: int = SMALL, every: float = 60.0) -> list[Movement]:
    return [Movement(f"out-{i}", AT - every * (i + 1), amount, "bob") for i in range(n)]


def test_velocity_count_fires_one_past_the_limit_and_not_at_it():
    at_limit = RULES.decide("p", SMALL, AT, outgoing(RULES.velocity_count - 1), [])
    past = RULES.decide("p", SMALL, AT, outgoing(RULES.velocity_count), [])
    assert at_limit == APPROVE
    assert past.verdict == "review"
    assert past.reason == "aml:velocity"
    assert past.score == pytest.approx(0.5)


def test_velocity_amount_fires_one_minor_unit_past_the_limit():
    history = [Movement("big", AT - 60, RULES.velocity_amount - 500, "bob")]
    assert RULES.decide("p", 500, AT, history, []) == APPROVE
    fired = RULES.decide("p", 501, AT, history, [])
    assert (fired.verdict, fired.reason) == ("review", "aml:velocity")


def test_velocity_ignores_movements_older_than_its_window_and_later_than_the_payment():
    in_window = outgoing(RULES.velocity_count - 1)
    just_out = Movement("old", AT - RULES.velocity_window - 0.001, SMALL, "bob")
    later = Movement("future", AT + 1, SMALL, "bob")
    assert RULES.decide("p", SMALL, AT, [*in_window, just_out, later], []) == APPROVE
    on_edge = Movement("edge", AT - RULES.velocity_window, SMALL, "bob")
    assert RULES.decide("p", SMALL, AT, [*in_window, on_edge], []).reason == "aml:velocity"


def test_duplicates_and_the_payment_itself_never_count_twice():
    history = outgoing(RULES.velocity_count - 1)
    redelivered = [*history, *history, Movement("p", AT, SMALL, "bob")]
    assert RULES.decide("p", SMALL, AT, redelivered, []) == APPROVE


def just_under(rules: AmlRules = RULES) -> int:
    return int(rules.reporting_threshold * (1 - rules.structuring_margin))


def test_structuring_fires_at_its_count_of_payments_just_under_the_threshold():
    band = [just_under(), RULES.reporting_threshold - 1]
    earlier = [Movement(f"s-{i}", AT - 3600 * (i + 1), a, "bob") for i, a in enumerate(band)]
    fired = RULES.decide("p", just_under(), AT, earlier, [])
    assert (fired.verdict, fired.reason, fired.score) == ("review", "aml:structuring", 0.5)
    assert RULES.decide("p", just_under(), AT, earlier[:1], []) == APPROVE


def test_structuring_band_edges_and_window():
    two = [Movement(f"s-{i}", AT - 3600 * (i + 1), just_under(), "bob") for i in range(2)]
    # The threshold itself and one minor unit under the band are not "just under".
    assert RULES.decide("p", RULES.reporting_threshold, AT, two, []) == APPROVE
    assert RULES.decide("p", just_under() - 1, AT, two, []) == APPROVE
    outside = [two[0], Movement("s-old", AT - RULES.structuring_window - 1, just_under(), "bob")]
    assert RULES.decide("p", just_under(), AT, outside, []) == APPROVE


def test_passthrough_fires_when_the_ratio_of_money_received_is_sent_on():
    received = [Movement("in-1", AT - 300, 100_000, "carol")]
    at_ratio = int(RULES.passthrough_ratio * 100_000)
    fired = RULES.decide("p", at_ratio, AT, [], received)
    assert (fired.verdict, fired.reason, fired.score) == ("review", "aml:passthrough", 0.5)
    assert RULES.decide("p", at_ratio - 1, AT, [], received) == APPROVE


def test_passthrough_counts_earlier_outgoing_in_its_window_and_ignores_old_incoming():
    received = [Movement("in-1", AT - 300, 100_000, "carol")]
    sent = [Movement("out-1", AT - 200, 40_000, "bob")]
    assert RULES.decide("p", 40_000, AT, sent, received).reason == "aml:passthrough"
    old = [Movement("in-old", AT - RULES.passthrough_window - 1, 100_000, "carol")]
    assert RULES.decide("p", 90_000, AT, [], old) == APPROVE
    assert RULES.decide("p", 90_000, AT, [], []) == APPROVE


def test_the_highest_scoring_rule_is_named():
    # 20,000 now and ten earlier payments of 1,000 in the window: all 30,000 received sent on
    received = [Movement("in-1", AT - 300, 30_000, "carol")]
    fired = RULES.decide("p", 20_000, AT, outgoing(RULES.velocity_count), received)
    assert fired.reason == "aml:passthrough"  # all of it sent on: 1 / 1.6; velocity only 0.5
    assert fired.score == 1 / (2 * RULES.passthrough_ratio)


def test_passthrough_is_money_in_transit_from_few_senders():
    """Sending more than came in spends the account's own balance; money from many senders is
    a busy account's, not a mule's: neither passes money on."""
    one = [Movement("in-1", AT - 300, 10_000, "carol")]
    assert RULES.decide("p", 9_000, AT, [], one).reason == "aml:passthrough"
    assert RULES.decide("p", 20_000, AT, [], one).verdict == "approve"
    many = [Movement(f"in-{i}", AT - 300, 2_500, f"sender-{i}") for i in range(4)]
    assert RULES.decide("p", 9_000, AT, [], many).verdict == "approve"
    assert RULES.decide("p", 7_000, AT, [], [*many[:3], many[0]]).reason == "aml:passthrough"


def test_window_span_is_the_longest_window():
    assert window_span(RULES) == RULES.structuring_window
    assert window_span(AmlRules(passthrough_window=90_000.0)) == 90_000.0


@pytest.mark.parametrize(("field", "value"), [("velocity_count", 0), ("passthrough_window", -1.0)])
def test_invalid_rules_name_the_field(field, value):
    with pytest.raises(InvalidInput, match=f"AmlRules.{field}: must be positive"):
        AmlRules(**{field: value})
    with pytest.raises(InvalidInput, match="structuring_margin: must be below 1"):
        AmlRules(structuring_margin=1.0)


# Ages on and around every window's edge, and one later than the payment.
AGES = [0.0, 1.0, 299.0, 600.0, 601.0, 3599.0, 3600.0, 3601.0, 86400.0, 86401.0, -1.0]
movements = st.lists(
    st.builds(
        Movement,
        payment_id=st.sampled_from([f"m-{i}" for i in range(30)] + ["p"]),
        at=st.sampled_from(AGES).map(lambda age: AT - age),
        amount=st.sampled_from([SMALL, just_under(), 100_000, 2_000_000]),
        counterparty=st.just("x"),
    ),
    max_size=40,
).map(lambda ms: list({m.payment_id: m for m in ms}.values()))  # one movement per id


@given(
    out=movements,
    inc=movements,
    amount=st.sampled_from([SMALL, just_under(), 100_000]),
    pick=st.integers(0, 100),
    into_outgoing=st.booleans(),
    rules=st.builds(
        AmlRules, velocity_count=st.integers(1, 5), structuring_count=st.integers(1, 3)
    ),
)
def test_a_duplicate_of_any_movement_never_changes_the_decision(
    out, inc, amount, pick, into_outgoing, rules
):
    before = rules.decide("p", amount, AT, out, inc)
    target = out if into_outgoing else inc
    if not target:
        return
    duplicate = target[pick % len(target)]
    grown = [*target, duplicate]
    after = (
        rules.decide("p", amount, AT, grown, inc)
        if into_outgoing
        else rules.decide("p", amount, AT, out, grown)
    )
    assert after == before
