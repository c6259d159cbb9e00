// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

// TEST-ONLY recipients that attack AutoPool's payout and claim paths. Never deployed outside tests.

import {AutoPool} from "../AutoPool.sol";

/// Rejects BNB while `rejecting` is set; can claim what was deferred to it.
contract RejectingRecipient {
    AutoPool public immutable pool;
    bool public rejecting = true;

    constructor(AutoPool pool_) {
        pool = pool_;
    }

    function setRejecting(bool value) external {
        rejecting = value;
    }

    function claimFromPool() external {
        pool.claim();
    }

    function claimFromPoolTo(address payable to) external {
        pool.claimTo(to);
    }

    receive() external payable {
        require(!rejecting, "rejecting");
    }
}

/// Burns every unit of gas it is given.
contract GasBurner {
    receive() external payable {
        while (true) {}
    }
}

/// A return-data bomb. On receiving BNB it answers with `size` bytes of data: returned
/// successfully (mode 0), as a revert (mode 1), or (mode 2, the control) it expands its memory
/// just as far but returns nothing. A caller that copied return data would pay to expand its own
/// memory as far again; AutoPool copies none. Can claim what was deferred to it.
contract ReturnBomb {
    AutoPool public immutable pool;
    uint256 public immutable size;
    uint8 public mode;

    constructor(AutoPool pool_, uint256 size_) {
        pool = pool_;
        size = size_;
    }

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function claimFromPool() external {
        pool.claim();
    }

    receive() external payable {
        uint256 n = size;
        uint8 m = mode;
        assembly {
            mstore(sub(n, 0x20), 1) // expand memory to n bytes in every mode
            if eq(m, 1) { revert(0, n) }
            if eq(m, 2) { return(0, 0) }
            return(0, n)
        }
    }
}

// SELFDESTRUCT senders (forced BNB, bounced payouts) are raw bytecode in
// tests/contracts/conftest.py: solc warns on every use of the deprecated opcode.

/// A recipient that needs its whole stipend: it refuses (reverts) if it finds less than
/// `required` gas on entry, and otherwise burns almost all it was given. With `required == 0`
/// it reports the gas it found instead (to calibrate `required` to exactly the full stipend).
contract StipendHungry {
    uint256 public immutable required;

    event GasAtEntry(uint256 gas);

    constructor(uint256 required_) {
        required = required_;
    }

    receive() external payable {
        uint256 left = gasleft(); // first: the code before it is the same in every deployment
        uint256 need = required;
        if (need == 0) {
            emit GasAtEntry(left);
            return;
        }
        assembly {
            if lt(left, need) { revert(0, 0) }
            for {} gt(gas(), 400) {} {}
        }
    }
}

/// Submits calls from a contract (a relayer, a multisig module, a batching contract).
/// `scan` tries every gas value in [from, to] for one call to `pool`, each in a sub-call that
/// is undone afterwards, and counts how each ended: reverted, succeeded with every line paid,
/// or succeeded with something deferred (pool.totalClaimable() grew). `forward` passes a call
/// on with all its gas (the EIP-150 63/64 rule applies at each hop); `forwardAndReport` does
/// the same and then reports how much was deferred.
contract GasScanner {
    error Outcome(bool ok, uint256 owed);

    struct Scan {
        uint256 reverted;
        uint256 paid;
        uint256 deferred;
        uint256 lastReverted;
        uint256 firstPaid;
        uint256 firstDeferred;
    }

    function scan(AutoPool pool, bytes calldata data, uint256 from, uint256 to) external returns (Scan memory r) {
        for (uint256 g = from; g <= to; ++g) {
            try this.attempt(pool, data, g) {} catch (bytes memory reason) {
                bool ok;
                uint256 owed;
                assembly {
                    ok := mload(add(reason, 0x24))
                    owed := mload(add(reason, 0x44))
                }
                if (!ok) {
                    r.reverted++;
                    r.lastReverted = g;
                } else if (owed == 0) {
                    r.paid++;
                    if (r.firstPaid == 0) r.firstPaid = g;
                } else {
                    r.deferred++;
                    if (r.firstDeferred == 0) r.firstDeferred = g;
                }
            }
        }
    }

    /// Always reverts, with the outcome: the state it changed is undone.
    function attempt(AutoPool pool, bytes calldata data, uint256 g) external {
        uint256 before = pool.totalClaimable();
        (bool ok,) = address(pool).call{gas: g}(data);
        revert Outcome(ok, pool.totalClaimable() - before);
    }

    function forward(address target, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    function forwardAndReport(address target, bytes calldata data, AutoPool pool)
        external
        returns (bool ok, uint256 owed)
    {
        uint256 before = pool.totalClaimable();
        (ok,) = target.call(data);
        owed = pool.totalClaimable() - before;
    }
}

/// Re-enters AutoPool from its `receive`: mode 1 calls `claim()`, mode 2 replays the call
/// data stored by `setPayload` (a signed `executeBatchPayouts`, `register` or `retopup`) with
/// `callValue` attached, mode 3 calls `claimTo(this)`. The outcome is logged, so a test can see
/// that the re-entry was attempted and how it failed. With `bubble` set, a failed re-entry
/// reverts the receive too.
contract ReentrantRecipient {
    AutoPool public immutable pool;
    address public payload; // a data contract: 0x00 followed by the call data to replay
    uint8 public mode;
    bool public bubble;
    uint80 public callValue; // same storage word as the three above: one SLOAD in receive

    event ReentryAttempt(uint8 mode, bool success, bytes returnData);

    constructor(AutoPool pool_) {
        pool = pool_;
    }

    function configure(uint8 mode_, bool bubble_) external {
        mode = mode_;
        bubble = bubble_;
    }

    function setCallValue(uint80 value) external {
        callValue = value;
    }

    /// SSTORE2-style: reading code is far cheaper than reading storage under a 12,300 stipend.
    function setPayload(bytes calldata data) external {
        bytes memory init = abi.encodePacked(hex"61", uint16(data.length + 1), hex"80600a3d393df3", hex"00", data);
        address p;
        assembly {
            p := create(0, add(init, 0x20), mload(init))
        }
        require(p != address(0), "payload deploy failed");
        payload = p;
    }

    function claimFromPool() external {
        pool.claim();
    }

    function claimFromPoolTo(address payable to) external {
        pool.claimTo(to);
    }

    receive() external payable {
        uint8 m = mode;
        if (m == 0) return;
        bool ok;
        bytes memory ret;
        if (m == 1) {
            (ok, ret) = address(pool).call(abi.encodeCall(AutoPool.claim, ()));
        } else if (m == 3) {
            (ok, ret) = address(pool).call(abi.encodeCall(AutoPool.claimTo, (payable(address(this)))));
        } else {
            address p = payload;
            bytes memory data;
            assembly {
                let size := sub(extcodesize(p), 1)
                data := mload(0x40)
                mstore(data, size)
                extcodecopy(p, add(data, 0x20), 1, size)
                mstore(0x40, add(add(data, 0x20), size))
            }
            (ok, ret) = address(pool).call{value: callValue}(data);
        }
        emit ReentryAttempt(m, ok, ret);
        if (!ok && bubble) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
    }
}

/// The shape of a common smart-contract wallet: a proxy whose receive does a cold SLOAD of its
/// implementation and a cold DELEGATECALL into code that emits an event (as Safe does). It
/// must be paid directly under PAYOUT_GAS_STIPEND, not deferred.
contract WalletImplementation {
    event SafeReceived(address indexed sender, uint256 value);

    receive() external payable {
        emit SafeReceived(msg.sender, msg.value);
    }
}

contract ProxyWallet {
    address internal singleton;

    constructor(address singleton_) {
        singleton = singleton_;
    }

    receive() external payable {
        _delegate();
    }

    fallback() external payable {
        _delegate();
    }

    function _delegate() private {
        address impl = singleton;
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), impl, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}
