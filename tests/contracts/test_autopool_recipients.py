"""Recipients that attack the payout and claim paths: return-data bombs, EIP-7702-delegated
EOAs, a recipient that needs its whole stipend under every possible gas limit (directly and
through contracts), and re-entry into register / retopup / claimTo."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from devtools.anvil import DEV_PRIVATE_KEYS
from tests.contracts.conftest import (
    ETHER,
    PoolHarness,
    address_of,
    delegate,
    deploy_artifact,
    error_selector,
    fresh_address,
)

ZERO = "0x" + "00" * 20
SPONSOR_KEY = DEV_PRIVATE_KEYS[9]  # TEST-ONLY: pays for the EIP-7702 transactions


def _recipient(h: PoolHarness, name: str, *args: Any) -> Contract:
    return deploy_artifact(h.w3, name, "test/Recipients", *args, sender=h.owner)


def _funded_key(h: PoolHarness) -> str:
    """TEST-ONLY: a fresh EOA with 1 BNB for gas, which the node will send for (impersonated)."""
    key = "0x" + secrets.token_hex(32)
    h.rpc("anvil_setBalance", [address_of(key), hex(ETHER)])
    h.rpc("anvil_impersonateAccount", [address_of(key)])
    return key


def _reentry_events(attacker: Contract, receipt: Any) -> list[dict[str, Any]]:
    logs = attacker.events.ReentryAttempt().process_receipt(receipt, errors=DISCARD)
    return [dict(e["args"]) for e in logs]


# ---------------------------------------------------------------- return-data bombs


def test_return_bomb_inside_the_stipend_is_paid_and_its_data_never_copied(
    harness: PoolHarness,
) -> None:
    """A recipient that accepts its payout and returns 40 kB (all its stipend allows) costs the
    batch what a recipient that expands its memory as far and returns nothing costs."""
    h = harness
    h.register(h.users[0], 10 * ETHER)
    bomb = _recipient(h, "ReturnBomb", h.pool.address, 40_000)
    fn = h.batch_fn(h.batch([(h.users[1], ETHER), (bomb.address, ETHER)]))
    receipt = h.send(fn, h.sender)
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutExecuted")] == [
        h.users[1],
        bomb.address,
    ]
    assert h.events(receipt, "PayoutDeferred") == []
    # The same batch from the same state, against the quiet control.
    loud = h.gas_of(h.batch_fn(h.batch([(h.users[1], ETHER), (bomb.address, ETHER)])), h.sender)
    h.send(bomb.functions.setMode(2), h.owner)
    quiet = h.gas_of(h.batch_fn(h.batch([(h.users[1], ETHER), (bomb.address, ETHER)])), h.sender)
    assert abs(loud - quiet) < 100, (loud, quiet)


def test_return_bomb_claims_with_full_gas_without_its_data_being_copied(
    harness: PoolHarness,
) -> None:
    """`claim` and `claimTo` forward all gas: a recipient returning 1 MB there pays ~2.2M gas
    for its own memory; a caller that copied the data would pay as much again."""
    h = harness
    h.register(h.users[0], 10 * ETHER)
    bomb = _recipient(h, "ReturnBomb", h.pool.address, 1 << 20)
    h.send(bomb.functions.setMode(1), h.owner)
    h.execute([(bomb.address, ETHER)])  # a 1 MB revert cannot fit in the stipend: deferred
    rejecting = _recipient(h, "RejectingRecipient", h.pool.address)
    h.execute([(rejecting.address, 2 * ETHER)])
    assert h.pool.functions.totalClaimable().call() == 3 * ETHER

    def claim_gas(mode: int, fn: Any) -> int:
        h.send(bomb.functions.setMode(mode), h.owner)
        return h.gas_of(fn, h.users[3])

    for fn in (bomb.functions.claimFromPool(), rejecting.functions.claimFromPoolTo(bomb.address)):
        loud, quiet = claim_gas(0, fn), claim_gas(2, fn)
        assert loud > 2_000_000  # the bomb really returned its megabyte
        assert abs(loud - quiet) < 1_000, (loud, quiet)
    h.send(bomb.functions.setMode(0), h.owner)
    receipt = h.send(bomb.functions.claimFromPool(), h.users[3])
    assert h.events(receipt, "Claimed")[0]["args"]["amount"] == ETHER
    receipt = h.send(rejecting.functions.claimFromPoolTo(bomb.address), h.users[3])
    assert h.events(receipt, "ClaimedTo")[0]["args"]["to"] == bomb.address
    assert h.w3.eth.get_balance(bomb.address) == 3 * ETHER


# ---------------------------------------------------------------- EIP-7702 delegated EOAs


def test_eip7702_delegated_recipient_is_treated_like_a_contract(harness: PoolHarness) -> None:
    """An EOA running delegated code is paid under the same stipend: a Safe-like receive is
    paid directly, a gas burner is deferred, and the owner of the key can still get its BNB."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    wallet_impl = _recipient(h, "WalletImplementation")
    burner = _recipient(h, "GasBurner")
    smart, stuck = _funded_key(h), _funded_key(h)
    delegate(h.w3, smart, wallet_impl.address, sponsor_key=SPONSOR_KEY)
    delegate(h.w3, stuck, burner.address, sponsor_key=SPONSOR_KEY)
    smart_addr, stuck_addr = address_of(smart), address_of(stuck)
    receipt = h.execute([(smart_addr, ETHER), (stuck_addr, 2 * ETHER)])
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutExecuted")] == [smart_addr]
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutDeferred")] == [stuck_addr]
    assert h.w3.eth.get_balance(smart_addr) == 2 * ETHER  # 1 funded + 1 paid (no gas spent)
    # Its own claim would run the burner with all gas and fail as a whole; claimTo works.
    h.expect_revert(h.pool.functions.claim(), "ClaimTransferFailed", stuck_addr, mined=False)
    to = fresh_address()
    assert h.send(h.pool.functions.claimTo(to), stuck_addr)["status"] == 1
    assert h.w3.eth.get_balance(to) == 2 * ETHER


def test_recipient_that_delegates_after_the_batch_was_signed_is_deferred_not_stuck(
    harness: PoolHarness,
) -> None:
    """The signer saw a plain EOA; by execution it runs a gas burner. The batch still executes;
    the line is deferred; after clearing the delegation the EOA claims it normally."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    key = _funded_key(h)
    addr = address_of(key)
    fn = h.batch_fn(h.batch([(h.users[1], ETHER), (addr, 3 * ETHER)]))
    delegate(h.w3, key, _recipient(h, "GasBurner").address, sponsor_key=SPONSOR_KEY)
    receipt = h.send(fn, h.sender)
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutDeferred")] == [addr]
    delegate(h.w3, key, ZERO, sponsor_key=SPONSOR_KEY)
    receipt = h.send(h.pool.functions.claim(), addr)
    assert h.events(receipt, "Claimed")[0]["args"]["amount"] == 3 * ETHER


def test_eip7702_delegated_recipient_cannot_reenter(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    code = _recipient(h, "ReentrantRecipient", h.pool.address)
    key = _funded_key(h)
    addr = address_of(key)
    delegate(h.w3, key, code.address, sponsor_key=SPONSOR_KEY)
    attacker = h.w3.eth.contract(address=addr, abi=code.abi)  # its code, its own storage
    h.send(attacker.functions.configure(1, False), h.owner)
    receipt = h.execute([(addr, ETHER)])
    reentrant = bytes.fromhex(error_selector(h.pool.abi, "ReentrantCall")[2:])
    assert _reentry_events(attacker, receipt) == [
        {"mode": 1, "success": False, "returnData": reentrant}
    ]
    assert h.events(receipt, "PayoutExecuted")[0]["args"]["recipient"] == addr


# ---------------------------------------------------------------- gas limits


def _hungry(h: PoolHarness) -> tuple[Contract, str]:
    """A StipendHungry contract calibrated to refuse anything short of the full stipend, and an
    EIP-7702 EOA delegated to the same code. The EOA already has a deferred wei (so does the
    pool's totalClaimable): deferring it again would write no new storage, the cheapest
    deferral there is, which is what a submitter starving it would need. Put it last: a starved
    line followed by another line would starve that line's gas check too."""
    probe = _recipient(h, "StipendHungry", 0)
    receipt = h.execute([(probe.address, 1)])
    (entry,) = probe.events.GasAtEntry().process_receipt(receipt, errors=DISCARD)
    full = entry["args"]["gas"]
    assert 12_000 < full <= 12_300  # the 10,000 given plus the EVM's 2,300 stipend, less dispatch
    hungry = _recipient(h, "StipendHungry", full)
    key = _funded_key(h)
    delegate(h.w3, key, _recipient(h, "GasBurner").address, sponsor_key=SPONSOR_KEY)
    h.execute([(address_of(key), 1)])
    assert h.pool.functions.claimable(address_of(key)).call() == 1
    delegate(h.w3, key, hungry.address, sponsor_key=SPONSOR_KEY)
    return hungry, address_of(key)


def test_no_gas_limit_turns_a_payout_into_a_deferral(harness: PoolHarness) -> None:
    """Every gas amount from 1 to past what the batch needs, given to executeBatchPayouts from a
    contract (a sub-call with exactly that gas, undone after): the batch either reverts or pays
    every line, including two recipients that fail on anything short of their full stipend (a
    contract and an EIP-7702 EOA running the same code). Never a deferral, and one threshold."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    hungry, delegated = _hungry(h)
    scanner = _recipient(h, "GasScanner")
    batch = h.batch([(fresh_address(), ETHER), (hungry.address, ETHER), (delegated, ETHER)])
    data = h.pool.encode_abi(
        "executeBatchPayouts", args=[h.as_tuple("PayoutBatch", batch), h.sign("PayoutBatch", batch)]
    )
    estimate = h.w3.eth.estimate_gas({"from": h.sender, "to": h.pool.address, "data": data})
    top = estimate + 5_000
    # Every gas amount is one sub-call: a long eth_call (about 25 s alone on 2 vCPUs, more
    # beside a parallel suite), so it gets its own generous HTTP timeout.
    slow = Web3(Web3.HTTPProvider(h.w3.provider.endpoint_uri, request_kwargs={"timeout": 600}))  # type: ignore[attr-defined]
    r = (
        slow.eth.contract(address=scanner.address, abi=scanner.abi)
        .functions.scan(h.pool.address, data, 1, top)
        .call({"gas": 10**11})
    )
    reverted, paid, deferred, last_reverted, first_paid, _ = r
    assert deferred == 0
    assert reverted + paid == top
    assert last_reverted + 1 == first_paid  # below it all revert, from it on all pay
    assert paid == top - first_paid + 1
    receipt = h.send(h.batch_fn(batch), h.sender)
    assert h.events(receipt, "PayoutDeferred") == []
    assert len(h.events(receipt, "PayoutExecuted")) == 3


def test_direct_submission_one_gas_short_reverts_and_never_defers(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    hungry, delegated = _hungry(h)
    batch = h.batch([(fresh_address(), ETHER), (hungry.address, ETHER), (delegated, ETHER)])
    fn = h.batch_fn(batch)
    limit = _lowest_passing_limit(h, fn)
    for gas in (limit - 1, limit - 2_000, limit - 30_000):
        assert h.send(fn, h.sender, gas=gas)["status"] == 0
    assert h.pool.functions.totalClaimable().call() == 1  # only the wei deferred in _hungry
    receipt = h.send(fn, h.sender, gas=limit)
    assert receipt["status"] == 1
    assert h.events(receipt, "PayoutDeferred") == []


def _lowest_passing_limit(h: PoolHarness, fn: Any) -> int:
    """The lowest transaction gas limit at which `fn` succeeds (bisection on eth_call)."""
    lo, hi = 21_000, 2_000_000

    def ok(gas: int) -> bool:
        try:
            fn.call({"from": h.sender, "gas": gas})
            return True
        except Exception:
            return False

    assert ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def test_submission_through_nested_contracts_cannot_force_a_deferral(
    harness: PoolHarness,
) -> None:
    """EOA -> relay (-> relay) -> pool, each hop forwarding all its gas (63/64 of it): every
    transaction gas limit within 5,000 of the threshold, and one in every 997 from 60,000 to
    400,000, either pays every line or pays none. (Every amount of gas the pool itself can be
    given is covered by the in-contract scan above.)"""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    hungry, delegated = _hungry(h)
    relay = _recipient(h, "GasScanner")
    outer = _recipient(h, "GasScanner")
    batch = h.batch([(hungry.address, ETHER), (delegated, ETHER)])
    inner = h.pool.encode_abi(
        "executeBatchPayouts", args=[h.as_tuple("PayoutBatch", batch), h.sign("PayoutBatch", batch)]
    )
    routes = {
        "one relay": relay.encode_abi(
            "forwardAndReport", args=[h.pool.address, inner, h.pool.address]
        ),
        "two relays": outer.encode_abi(
            "forwardAndReport",
            args=[
                relay.address,
                relay.encode_abi("forward", [h.pool.address, inner]),
                h.pool.address,
            ],
        ),
    }
    url = h.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    for name, data in routes.items():
        target = relay.address if name == "one relay" else outer.address
        coarse = _scan_tx_limits(url, h.sender, target, data, range(60_000, 400_001, 997))
        first = min(g for g, o in coarse.items() if o == "paid")
        dense = _scan_tx_limits(url, h.sender, target, data, range(first - 6_000, first + 5_000))
        outcomes = coarse | dense
        assert "deferred" not in outcomes.values(), name
        threshold = min(g for g, o in outcomes.items() if o == "paid")
        assert first - 997 < threshold <= first, name
        assert all((o == "paid") == (g >= threshold) for g, o in outcomes.items()), name


def _scan_tx_limits(url: str, sender: str, to: str, data: str, limits: range) -> dict[int, str]:
    """eth_call `data` at each transaction gas limit, in JSON-RPC batches; each outcome:
    "failed" (the transaction would revert), "none" (the pool call failed, nothing paid),
    "paid", or "deferred" (the pool call succeeded with something left claimable)."""
    out: dict[int, str] = {}
    with httpx.Client(timeout=300) as client:
        for start in range(0, len(limits), 500):
            reqs = [
                {
                    "jsonrpc": "2.0",
                    "id": g,
                    "method": "eth_call",
                    "params": [{"from": sender, "to": to, "data": data, "gas": hex(g)}, "latest"],
                }
                for g in limits[start : start + 500]
            ]
            answer = client.post(url, json=reqs).json()
            assert isinstance(answer, list), str(answer)[:300]
            for resp in answer:
                g = int(resp["id"])
                if "error" in resp:
                    out[g] = "failed"
                    continue
                word = bytes.fromhex(resp["result"][2:])
                ok, deferred = int.from_bytes(word[:32], "big"), int.from_bytes(word[32:64], "big")
                out[g] = "none" if not ok else ("deferred" if deferred else "paid")
    return out


# ---------------------------------------------------------------- re-entry


def test_recipient_reentering_register_or_retopup_is_refused(harness: PoolHarness) -> None:
    """From inside its payout (12,300 gas) and from inside its claim (all gas, with the claimed
    BNB attached), a recipient replaying a validly signed register / retopup for itself is
    refused; the payload stays unused and can still be paid normally."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    attacker = _recipient(h, "ReentrantRecipient", h.pool.address)
    reentrant = bytes.fromhex(error_selector(h.pool.abi, "ReentrantCall")[2:])
    payloads = [
        ("register", h.registration(attacker.address, ETHER)),
        ("retopup", h.retopup_payload(attacker.address, ETHER)),
    ]
    for name, msg in payloads:
        primary = "Registration" if name == "register" else "Retopup"
        call = h.pool.encode_abi(name, args=[h.as_tuple(primary, msg), h.sign(primary, msg)])
        h.send(attacker.functions.setPayload(call), h.owner)

        # During its payout.
        h.send(attacker.functions.configure(2, False), h.owner)
        h.send(attacker.functions.setCallValue(0), h.owner)
        receipt = h.execute([(attacker.address, ETHER)])
        assert _reentry_events(attacker, receipt) == [
            {"mode": 2, "success": False, "returnData": reentrant}
        ]
        assert h.events(receipt, "PayoutExecuted")[0]["args"]["recipient"] == attacker.address

        # During its claim, paying with the BNB being claimed.
        h.send(attacker.functions.configure(1, True), h.owner)
        h.execute([(attacker.address, ETHER)])  # re-enters claim() and bubbles: deferred
        h.send(attacker.functions.configure(2, False), h.owner)
        h.send(attacker.functions.setCallValue(ETHER), h.owner)
        receipt = h.send(attacker.functions.claimFromPool(), h.users[3])
        assert _reentry_events(attacker, receipt) == [
            {"mode": 2, "success": False, "returnData": reentrant}
        ]
        assert h.events(receipt, "RegistrationAccepted") == []
        assert h.events(receipt, "RetopupCompleted") == []
        assert not h.pool.functions.isNonceUsed(msg["nonce"]).call()
    assert h.balance() == 20 * ETHER - 4 * ETHER
    assert h.w3.eth.get_balance(attacker.address) == 4 * ETHER


def test_claim_to_the_zero_address_is_refused(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 5 * ETHER)
    rejecting = _recipient(h, "RejectingRecipient", h.pool.address)
    h.execute([(rejecting.address, ETHER)])
    h.expect_revert(h.pool.functions.claimTo(ZERO), "ZeroAddress", h.users[1])
    assert h.send(rejecting.functions.claimFromPoolTo(ZERO), h.users[1], gas=300_000)["status"] == 0
    assert h.pool.functions.claimable(rejecting.address).call() == ETHER


def test_reentry_through_claim_to_is_refused(harness: PoolHarness) -> None:
    """claimTo(self) re-entering claimTo(self), and claimTo(another attacker) re-entering that
    attacker's own claim: each inner call is refused, each outer claim pays exactly once."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    a = _recipient(h, "ReentrantRecipient", h.pool.address)
    b = _recipient(h, "ReentrantRecipient", h.pool.address)
    reentrant = bytes.fromhex(error_selector(h.pool.abi, "ReentrantCall")[2:])
    for attacker in (a, b):  # bubbling re-entry during the payout: both deferred
        h.send(attacker.functions.configure(1, True), h.owner)
    h.execute([(a.address, 2 * ETHER), (b.address, 3 * ETHER)])
    assert h.pool.functions.totalClaimable().call() == 5 * ETHER

    h.send(a.functions.configure(3, False), h.owner)
    receipt = h.send(a.functions.claimFromPoolTo(a.address), h.users[3])
    assert _reentry_events(a, receipt) == [{"mode": 3, "success": False, "returnData": reentrant}]
    assert h.w3.eth.get_balance(a.address) == 2 * ETHER

    h.send(a.functions.configure(0, False), h.owner)
    h.execute([(a.address, ETHER)])  # a is paid directly now; give b's test its own claimable
    h.send(b.functions.configure(1, False), h.owner)
    h.send(a.functions.configure(1, True), h.owner)
    h.execute([(a.address, ETHER)])  # deferred again
    receipt = h.send(a.functions.claimFromPoolTo(b.address), h.users[3])
    assert _reentry_events(b, receipt) == [{"mode": 1, "success": False, "returnData": reentrant}]
    assert h.pool.functions.claimable(b.address).call() == 3 * ETHER
    assert h.pool.functions.claimable(a.address).call() == 0
    assert h.w3.eth.get_balance(b.address) == ETHER
    assert h.pool.functions.totalClaimable().call() == 3 * ETHER
