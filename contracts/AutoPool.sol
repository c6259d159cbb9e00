// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// v0 placeholder; replaced by the full contract (issue 3).
contract AutoPool {
    event RegistrationAccepted(address indexed user, address indexed referrer, uint256 indexed slot, uint256 amount, bytes32 planHash, uint256 nonce);
}
