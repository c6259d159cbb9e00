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

/// Answers a payout with a huge revert payload (a "return bomb").
contract ReturnBomb {
    receive() external payable {
        assembly {
            revert(0, 1000000)
        }
    }
}

/// Re-enters AutoPool from its `receive`: mode 1 calls `claim()`, mode 2 replays the call
/// data stored by `setPayload` (e.g. a signed `executeBatchPayouts`), mode 3 calls `register`
/// style payloads the same way as 2. The outcome is logged, so a test can see that the
/// re-entry was attempted and how it failed. With `bubble` set, a failed re-entry reverts the
/// receive too.
contract ReentrantRecipient {
    AutoPool public immutable pool;
    address public payload; // a data contract: 0x00 followed by the call data to replay
    uint8 public mode;
    bool public bubble;

    event ReentryAttempt(uint8 mode, bool success, bytes returnData);

    constructor(AutoPool pool_) {
        pool = pool_;
    }

    function configure(uint8 mode_, bool bubble_) external {
        mode = mode_;
        bubble = bubble_;
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

    receive() external payable {
        uint8 m = mode;
        if (m == 0) return;
        bool ok;
        bytes memory ret;
        if (m == 1) {
            (ok, ret) = address(pool).call(abi.encodeCall(AutoPool.claim, ()));
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
            (ok, ret) = address(pool).call(data);
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
